"""Trimap-only supervision of any alpha model: known-region L1 + lambda DDC."""

from __future__ import annotations

import torch

from .. import losses as L
from .base import Batch, Method, Tensor, alpha_forward


class DDCMethod(Method):
    """[loss] lam (10), window (11), k (11), max_elements (memory budget per DDC chunk)."""

    name = "ddc"

    def losses(self, batch: Batch, step: int) -> dict[str, Tensor]:
        c = self.loss_cfg
        pred = alpha_forward(self.net, batch["image"], batch.get("guidance", batch["trimap"]))
        return L.ddc_total_loss(pred.float(), batch["trimap"], batch["image"], float(c.get("lam", 10.0)),
                                window=int(c.get("window", 11)), k=int(c.get("k", 11)),
                                max_elements=int(c.get("max_elements", 1 << 24)))

    @torch.no_grad()
    def predict(self, batch: Batch, model=None):
        model = model or self.model
        return model.predict(batch["image"], guidance=batch.get("guidance", batch.get("trimap")))

"""MODNet: supervised training (L_s, L_d, L_alpha) and SOC adaptation on unlabelled images."""

from __future__ import annotations

import copy

import torch

from .. import losses as L
from .base import Batch, Method, Tensor, get_band, normalise_input


class ModnetMethod(Method):
    """Supervised MODNet. [loss] semantic / detail / matte weights (paper 1 / 10 / 1;
    `weights = "code"` selects the public code's 10 / 10 / 1)."""

    name = "modnet"

    def __init__(self, recipe, device, log=print):
        super().__init__(recipe, device, log)
        c = self.loss_cfg
        if c.get("weights") == "code":
            self.weights = L.ModnetWeights(10.0, 10.0, 1.0)
        else:
            self.weights = L.ModnetWeights(c.get("semantic", 1.0), c.get("detail", 10.0), c.get("matte", 1.0))
        self.band_size = int(c.get("band_size", 7))

    def losses(self, batch: Batch, step: int) -> dict[str, Tensor]:
        x = normalise_input(self.model, batch["image"])
        sem, det, matte = self.net(x, False)
        return L.modnet_loss(sem, det, matte, batch["alpha"], get_band(batch, self.band_size), batch["image"],
                             batch["foreground"], batch["background"], self.weights)


class ModnetSocMethod(Method):
    """SOC: L_cons + L_dd on unlabelled images against a frozen copy; BatchNorm frozen.
    [loss] semantic (paper 1, code 100), detail 1, frozen 1."""

    name = "modnet_soc"

    def __init__(self, recipe, device, log=print):
        super().__init__(recipe, device, log)
        self.frozen = copy.deepcopy(self.model).eval()
        for p in self.frozen.parameters():
            p.requires_grad_(False)
        n = L.freeze_batchnorm(self.model)
        log(f"SOC: frozen copy made; {n} BatchNorm layers frozen")
        c = self.loss_cfg
        self.w = (c.get("semantic", 1.0), c.get("detail", 1.0), c.get("frozen", 1.0))

    def modules(self):
        return {"model": self.model, "frozen": self.frozen}

    def train_mode(self) -> None:
        self.model.train()
        L.freeze_batchnorm(self.model)  # model.train() would switch BN back to batch statistics

    def losses(self, batch: Batch, step: int) -> dict[str, Tensor]:
        x = normalise_input(self.model, batch["image"])
        sem, det, matte = self.net(x, False)
        with torch.no_grad():
            _, det_frozen, _ = self.frozen(x, False)
        return L.modnet_soc_loss(sem, det, matte, det_frozen, *self.w)

"""GFM: glance CE + focus (transition) + collaborative-matting losses, all weights 1."""

from __future__ import annotations

from .. import losses as L
from .base import Batch, Method, Tensor, normalise_input


class GFMMethod(Method):
    """[loss] transition_class (TT: 1), glance_mode ('official': CE on the sigmoid outputs
    as the GFM code does; 'probs')."""

    name = "gfm"

    def losses(self, batch: Batch, step: int) -> dict[str, Tensor]:
        x = normalise_input(self.model, batch["image"])
        glance, focus, fusion = self.net(x)
        return L.gfm_loss(glance, focus, fusion, batch["glance"], batch["alpha"], batch["image"],
                          batch["foreground"], batch["background"],
                          int(self.loss_cfg.get("transition_class", 1)),
                          str(self.loss_cfg.get("glance_mode", "official")))

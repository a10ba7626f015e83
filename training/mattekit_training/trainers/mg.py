"""MG Matting: PRN with deep supervision, PRM self-guidance and the guidance curriculum;
the separate foreground-colour network trained on RAB data."""

from __future__ import annotations

import torch

from .. import losses as L
from .base import Batch, Method, Tensor, normalise_input, unknown_from_trimap


class PRNMethod(Method):
    """[loss] os8 / os4 / os1 head weights (1 / 2 / 3), comp (bool), k1 / k2 training dilation
    (30 / 15), gt_until / mixed_until curriculum boundaries in iterations (5k / 15k)."""

    name = "prn"

    def __init__(self, recipe, device, log=print):
        super().__init__(recipe, device, log)
        c = self.loss_cfg
        self.weights = L.MGWeights(c.get("os8", 1.0), c.get("os4", 2.0), c.get("os1", 3.0), bool(c.get("comp", True)))
        self.k1, self.k2 = int(c.get("k1", 30)), int(c.get("k2", 15))
        self.gt_until, self.mixed_until = int(c.get("gt_until", 5000)), int(c.get("mixed_until", 15000))

    def guidance_input(self, batch: Batch) -> Tensor:
        from mattekit.models.prn import prepare_guidance

        return prepare_guidance(batch["guidance"], self.model.config.guidance_threshold)

    def losses(self, batch: Batch, step: int) -> dict[str, Tensor]:
        x = normalise_input(self.model, batch["image"])
        out = self.net(x, self.guidance_input(batch))
        os8, os4, os1 = out["alpha_os8"], out["alpha_os4"], out["alpha_os1"]
        stage = L.guidance_stage(step, self.gt_until, self.mixed_until)
        use_gt = stage == "gt" or (stage == "mixed" and bool(torch.rand(()) < 0.5))
        if use_gt and "trimap" in batch:
            g4 = g1 = unknown_from_trimap(batch["trimap"])
        else:
            g4 = L.self_guidance(os8, self.k1, random_width=True)
            os4 = L.prm_fuse(os8, os4, g4)
            g1 = L.self_guidance(os4, self.k2, random_width=True)
            os1 = L.prm_fuse(os4, os1, g1)
        res = L.mg_loss(os8, os4, os1, batch["alpha"], g4, g1, batch["image"], batch.get("foreground"),
                        batch.get("background"), self.weights)
        res["self_guidance"] = torch.tensor(0.0 if use_gt else 1.0)
        return res


class FGNetMethod(Method):
    """Foreground net: L1 + composition + Laplacian on the whole image (RAB data).

    The residual variant (base="multilevel") sees the classical estimate F_ml as well and is
    scored only where alpha > 0: where alpha = 0 no colour can be recovered from the image, so
    asking a correction of F_ml there would teach it to invent colour (the paper's net is scored
    everywhere because RAB gives F everywhere)."""

    name = "fgnet"

    def losses(self, batch: Batch, step: int) -> dict[str, Tensor]:
        x = normalise_input(self.model, batch["image"])
        alpha, target = batch["alpha"], batch["foreground"]
        if not getattr(self.model, "residual", False):
            fg = self.net(x, alpha)["foreground"]
            return L.foreground_loss(fg, target, alpha, batch["background"], batch["image"])
        from mattekit.models.fgnet import multilevel_base

        fg = self.net(x, alpha, multilevel_base(batch["image"], alpha))["foreground"]
        fg = torch.where(alpha > 0, fg, target)  # alpha = 0: no error, no gradient
        return L.foreground_loss(fg, target, alpha, batch["background"], batch["image"])

    def validation_target(self, batch: Batch):
        return ("foreground", batch["foreground"]) if "foreground" in batch else None

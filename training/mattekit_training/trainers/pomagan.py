"""POMAGAN's alpha net as a cGAN.

Generator: our PRN (image + coarse segmentation as guidance -> alpha), i.e. the paper's
"image encoder + segmentation encoding block" is replaced by PRN's 4-channel encoder; the
segmentation stage is not trained here (any segmentation, e.g. MODNet's matte or the dataset's
coarse `guidance`, feeds it). Discriminator: 3-scale pix2pixHD PatchGAN on (image, alpha).
GAN loss: LSGAN by default (`gan_mode = "hinge"` switches). G / D have their own Adam.
"""

from __future__ import annotations

import torch

from .. import losses as L
from .base import Batch, Method, Tensor, normalise_input


class PomaganMethod(Method):
    """[loss] perceptual (10), alpha (100), border (100), gan_mode, border_size,
    perceptual_weights (VGG-19 file; absent -> perceptual term OFF, said once);
    [discriminator] ndf, n_layers, num_d."""

    name = "pomagan"
    unused_parameters = frozenset({"model"})  # the PRN's OS8 / OS4 heads are not used as a generator

    def __init__(self, recipe, device, log=print):
        super().__init__(recipe, device, log)
        c = self.loss_cfg
        self.weights = L.PomaganWeights(c.get("perceptual", 10.0), c.get("alpha", 100.0), c.get("border", 100.0),
                                        str(c.get("gan_mode", "lsgan")), int(c.get("border_size", 15)))
        d = recipe.get("discriminator", {})
        self.disc = L.MultiScaleDiscriminator(4, int(d.get("ndf", 64)), int(d.get("n_layers", 3)),
                                              int(d.get("num_d", 3))).to(device)
        self.disc_net: torch.nn.Module = self.disc
        self.perceptual = L.PerceptualLoss(c.get("perceptual_weights"), log=log).to(device)

    def modules(self):
        return {"model": self.model, "disc": self.disc}

    def trainable(self):
        return {"model": self.model, "disc": self.disc}

    def wrap(self, name, wrapped):
        if name == "model":
            self.net = wrapped
        elif name == "disc":
            self.disc_net = wrapped

    def param_groups(self):
        return {"main": [p for p in self.model.parameters() if p.requires_grad], "disc": list(self.disc.parameters())}

    def train_mode(self):
        self.model.train()
        self.disc.train()

    def eval_mode(self):
        self.model.eval()
        self.disc.eval()

    def generate(self, batch: Batch) -> Tensor:
        from mattekit.models.prn import prepare_guidance

        x = normalise_input(self.model, batch["image"])
        g = prepare_guidance(batch["guidance"], self.model.config.guidance_threshold)
        return self.net(x, g)["alpha_os1"]

    def train_step(self, batch, step, optims, scaler, amp, clip):
        img, alpha, bg = batch["image"], batch["alpha"], batch["background"]
        opt_g, opt_d = optims["main"], optims["disc"]
        with torch.autocast(self.device.type, enabled=amp):
            pred = self.generate(batch)
            # D step: real and fake in one forward (one DDP forward per backward).
            n = img.shape[0]
            d_out = self.disc_net(torch.cat([torch.cat([img, alpha], 1), torch.cat([img, pred.detach()], 1)], 0))
            d_loss = L.pomagan_discriminator_loss([o[:n] for o in d_out], [o[n:] for o in d_out],
                                                  self.weights.gan_mode)
        opt_d.zero_grad(set_to_none=True)
        scaler.scale(d_loss).backward()
        if clip and clip > 0:
            scaler.unscale_(opt_d)
            torch.nn.utils.clip_grad_norm_(self.disc.parameters(), clip)
        scaler.step(opt_d)
        # G step: D's parameters get gradients too; they are discarded by the next zero_grad.
        with torch.autocast(self.device.type, enabled=amp):
            d_fake = self.disc_net(torch.cat([img, pred], 1))
            out = L.pomagan_generator_loss(d_fake, pred.float(), alpha, img, bg, self.perceptual, self.weights)
        opt_g.zero_grad(set_to_none=True)
        scaler.scale(out["total"]).backward()
        if clip and clip > 0:
            scaler.unscale_(opt_g)
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), clip)
        scaler.step(opt_g)
        scaler.update()
        logs = {k: float(v.detach()) for k, v in out.items()}
        logs["gan_d"] = float(d_loss.detach())
        return logs

    def losses(self, batch, step):  # the generator objective alone (used for logging / tests)
        pred = self.generate(batch)
        d_fake = self.disc_net(torch.cat([batch["image"], pred], 1))
        return L.pomagan_generator_loss(d_fake, pred, batch["alpha"], batch["image"], batch["background"],
                                        self.perceptual, self.weights)

"""MG Matting's separate foreground-colour network (Yu et al. 2021, §3.3 "Foreground colour").

The paper describes it as "a separate encoder-decoder with the same backbone" taking the image and
the alpha matte and predicting the foreground colour F, trained with Random Alpha Blending (random F,
random B, unrelated random alpha; L1 + composition + Laplacian losses on F over the whole image).
**The authors released no code and no checkpoint for it**, so there is no official layout to match
and no fixture: this is our implementation from the paper, built from the PRN's blocks
(`mattekit.models.prn`): encoder (ResShortCut or MobileNetV2) -> ASPP -> decoder, with a single
full-resolution head of 3 channels and a sigmoid.

    forward(image_normalised (N, 3, H, W), alpha (N, 1, H, W)) -> {"foreground": (N, 3, H, W) in [0, 1]}

`base="multilevel"` (our light, shipped variant) makes it a *correction* of the classical
multi-level estimate F_ml (Germer et al., `mattekit.foreground`) instead of a colour predictor
from scratch: the net also sees F_ml and adds a bounded residual to it, only where
0 < alpha < 1 (elsewhere F is known: the image where alpha = 1, irrelevant where alpha = 0).
Its last conv starts at zero, so an untrained net *is* the classical estimate and training can
only move it where the data says so; a from-scratch colour net must first relearn to copy the
image, which a short CPU run never did (F-MSE 15x the classical one, docs/benchmarks.md).

    forward(image_normalised, alpha, base (N, 3, H, W) in [0, 1]) -> {"foreground": ...}
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn as nn

from . import spectral
from .prn import (EncoderDecoder, ForwardFn, _init_weights, normalize_image, official_padding,
                  official_sn_paths, reflect_pad)
from .registry import register_model
from ..foreground import ALPHA_EPS as SOFT_EPS


@dataclass
class FGNetConfig:
    #: "resnet_shortcut" (same backbone as the PRN, the paper's choice) or "mobilenetv2" (light).
    encoder: str = "resnet_shortcut"
    #: Channel multiplier of our blocks (1.0 = PRN widths).
    width: float = 1.0
    encoder_layers: tuple[int, int, int, int] = (3, 4, 4, 2)
    decoder_layers: tuple[int, int, int, int] = (2, 3, 3, 2)
    #: Spectral norm on the same convs as the PRN (training only; weights stay plain on export).
    spectral_norm: bool = False
    #: "none": predict F (the paper). "multilevel": correct the multi-level estimate F_ml.
    base: str = "none"
    #: Largest correction per channel (multilevel only): tanh-bounded, so a bad pixel stays near F_ml.
    max_correction: float = 0.5


BASES = ("none", "multilevel")


def light_config() -> FGNetConfig:
    """A CPU-friendly variant: MobileNetV2 encoder, half-width decoder, shorter stages."""
    return FGNetConfig(encoder="mobilenetv2", width=0.5, decoder_layers=(1, 2, 2, 1))


def residual_config() -> FGNetConfig:
    """The shipped variant: `light_config` correcting the multi-level estimate."""
    return FGNetConfig(encoder="mobilenetv2", width=0.5, decoder_layers=(1, 2, 2, 1), base="multilevel")


def multilevel_base(image: torch.Tensor, alpha: torch.Tensor) -> torch.Tensor:
    """The daemon's classical estimate F_ml (`foreground.classical_foreground`) per image: image (N, 3, H, W), alpha (N, 1, H, W), both in
    [0, 1] -> (N, 3, H, W) float32 in [0, 1] on image's device (computed on the CPU, numba)."""
    from ..foreground import classical_foreground

    img = image.detach().float().permute(0, 2, 3, 1).cpu().numpy()
    a = alpha.detach().float()[:, 0].clamp(0, 1).cpu().numpy()
    est = [classical_foreground(img[i], a[i]) for i in range(img.shape[0])]
    return torch.from_numpy(np.stack(est)).permute(0, 3, 1, 2).contiguous().to(image.device)


@register_model("fgnet", FGNetConfig, task="foreground")
class FGNet(nn.Module):
    """Foreground colour network. `forward` is the bare network; `predict` pads and normalises."""

    onnx_output_names = ("foreground",)
    onnx_dynamic_hw = True
    size_multiple = 32

    def __init__(self, config: FGNetConfig | None = None):
        super().__init__()
        self.config = config = config or FGNetConfig()
        if config.base not in BASES:
            raise ValueError(f"base must be one of {BASES}, got {config.base!r}")
        self.residual = config.base == "multilevel"
        self.onnx_input_names = ("image", "alpha", "base") if self.residual else ("image", "alpha")
        net = EncoderDecoder(config.encoder, 7 if self.residual else 4, config.width, config.encoder_layers,
                             config.decoder_layers, ("os1",), 3)
        self.encoder, self.aspp, self.decoder = net.encoder, net.aspp, net.decoder
        _init_weights(self)
        if self.residual:  # start as the classical estimate
            last = self.decoder.refine_OS1[-1]
            nn.init.zeros_(last.weight)
            nn.init.zeros_(last.bias)
        self.sn_paths = official_sn_paths(self)
        if config.spectral_norm:
            spectral.apply_spectral_norm(self, self.sn_paths)
        self._register_load_state_dict_pre_hook(spectral.load_state_dict_pre_hook, with_module=True)

    def forward(self, image: torch.Tensor, alpha: torch.Tensor,
                base: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """image (N, 3, H, W) ImageNet-normalised, alpha (N, 1, H, W) in [0, 1], and for
        base="multilevel" base (N, 3, H, W) = F_ml in [0, 1]; H, W multiples of 32.
        Returns {"foreground": (N, 3, H, W) in [0, 1]}."""
        if not self.residual:
            embedding, feats = self.encoder(torch.cat((image, alpha), dim=1))
            return {"foreground": torch.sigmoid(self.decoder(self.aspp(embedding), feats)["os1"])}
        if base is None:
            raise ValueError("this foreground net corrects the multi-level estimate: pass base")
        embedding, feats = self.encoder(torch.cat((image, alpha, normalize_image(base)), dim=1))
        delta = self.config.max_correction * torch.tanh(self.decoder(self.aspp(embedding), feats)["os1"])
        soft = ((alpha > 0) & (alpha < 1.0 - SOFT_EPS)).to(delta.dtype)
        return {"foreground": (base + delta * soft).clamp(0.0, 1.0)}

    @torch.no_grad()
    def predict(self, image: torch.Tensor, guidance: torch.Tensor | None = None, alpha: torch.Tensor | None = None,
                forward: ForwardFn | None = None, base: torch.Tensor | None = None) -> torch.Tensor:
        """image (N, 3, H, W) sRGB in [0, 1], any H, W; alpha (N, 1, H, W) in [0, 1]; base
        (N, 3, H, W): F_ml for base="multilevel" (computed here when None; the engine passes
        its full-frame estimate so tiles share one solve).
        Returns foreground (N, 3, H, W) in [0, 1]. Pads / crops like the PRN; `guidance` is unused."""
        if alpha is None:
            raise ValueError("the foreground net needs an alpha matte")
        forward = forward or self.forward
        n, _, h, w = image.shape
        if alpha.dim() == 3:
            alpha = alpha[:, None]
        pad = official_padding(h, w)
        alpha = alpha.float().clamp(0.0, 1.0).to(image.device)
        x = reflect_pad(normalize_image(image.float()), pad)
        a = reflect_pad(alpha, pad)
        if self.residual:
            if base is None:
                base = multilevel_base(image, alpha)
            fg = forward(x, a, reflect_pad(base.float().to(image.device), pad))["foreground"]
        else:
            fg = forward(x, a)["foreground"]
        return fg[:, :, pad[2]: pad[2] + h, pad[0]: pad[0] + w].clamp(0.0, 1.0)

    def onnx_example_inputs(self, h: int = 512, w: int = 512) -> tuple[torch.Tensor, ...]:
        """(image (1, 3, h, w) normalised, alpha (1, 1, h, w)[, base (1, 3, h, w)]); h, w multiples of 32."""
        g = torch.Generator().manual_seed(0)
        rgb = torch.rand(1, 3, h, w, generator=g)
        alpha = torch.linspace(0, 1, w).expand(1, 1, h, w).contiguous()
        return (normalize_image(rgb), alpha, rgb) if self.residual else (normalize_image(rgb), alpha)


def official_config(variant: str = "paper") -> FGNetConfig:
    """The paper's configuration (same backbone as the PRN). No official weights exist."""
    if variant != "paper":
        raise ValueError("MG Matting released no foreground-net checkpoint; only variant 'paper' exists")
    return FGNetConfig()


def from_official_state_dict(sd: dict[str, torch.Tensor], config: FGNetConfig | None = None) -> dict[str, torch.Tensor]:
    """No official checkpoint exists; accepts a state_dict in the PRN's official SN layout
    (`<p>.module.weight_{bar,u,v}`, optional `module.` prefix) and folds it to plain weights."""
    if "state_dict" in sd and isinstance(sd["state_dict"], dict):
        sd = sd["state_dict"]
    keys = list(sd)
    if keys and keys[0].startswith("module"):
        sd = {k[len("module") + 1:]: v for k, v in sd.items()}
    return spectral.fold_official_state_dict(sd)


def to_official_state_dict(sd: dict[str, torch.Tensor], config: FGNetConfig | None = None) -> dict[str, torch.Tensor]:
    """Ours -> the PRN's official SN layout (for use with a GCA/MG-style code-base)."""
    config = config or FGNetConfig()
    with torch.device("meta"):
        model = FGNet(FGNetConfig(**{**config.__dict__, "spectral_norm": False}))
    plain = spectral.plain_state_dict_from(sd)
    own = model.state_dict()
    if set(plain) != set(own):
        raise KeyError(f"state_dict does not match config: {sorted(set(plain) ^ set(own))[:5]}")
    return spectral.unfold_official_state_dict({k: plain[k] for k in own}, model.sn_paths)

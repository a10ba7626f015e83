"""MG Matting's separate foreground-colour network (Yu et al. 2021, §3.3 "Foreground colour").

The paper describes it as "a separate encoder-decoder with the same backbone" taking the image and
the alpha matte and predicting the foreground colour F, trained with Random Alpha Blending (random F,
random B, unrelated random alpha; L1 + composition + Laplacian losses on F over the whole image).
**The authors released no code and no checkpoint for it**, so there is no official layout to match
and no fixture: this is our implementation from the paper, built from the PRN's blocks
(`mattekit.models.prn`): encoder (ResShortCut or MobileNetV2) -> ASPP -> decoder, with a single
full-resolution head of 3 channels and a sigmoid.

    forward(image_normalised (N, 3, H, W), alpha (N, 1, H, W)) -> {"foreground": (N, 3, H, W) in [0, 1]}
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn

from . import spectral
from .prn import (EncoderDecoder, ForwardFn, _init_weights, normalize_image, official_padding,
                  official_sn_paths, reflect_pad)
from .registry import register_model


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


def light_config() -> FGNetConfig:
    """A CPU-friendly variant: MobileNetV2 encoder, half-width decoder, shorter stages."""
    return FGNetConfig(encoder="mobilenetv2", width=0.5, decoder_layers=(1, 2, 2, 1))


@register_model("fgnet", FGNetConfig, task="foreground")
class FGNet(nn.Module):
    """Foreground colour network. `forward` is the bare network; `predict` pads and normalises."""

    onnx_input_names = ("image", "alpha")
    onnx_output_names = ("foreground",)
    onnx_dynamic_hw = True
    size_multiple = 32

    def __init__(self, config: FGNetConfig | None = None):
        super().__init__()
        self.config = config = config or FGNetConfig()
        net = EncoderDecoder(config.encoder, 4, config.width, config.encoder_layers, config.decoder_layers,
                             ("os1",), 3)
        self.encoder, self.aspp, self.decoder = net.encoder, net.aspp, net.decoder
        _init_weights(self)
        self.sn_paths = official_sn_paths(self)
        if config.spectral_norm:
            spectral.apply_spectral_norm(self, self.sn_paths)
        self._register_load_state_dict_pre_hook(spectral.load_state_dict_pre_hook, with_module=True)

    def forward(self, image: torch.Tensor, alpha: torch.Tensor) -> dict[str, torch.Tensor]:
        """image (N, 3, H, W) ImageNet-normalised, alpha (N, 1, H, W) in [0, 1]; H, W multiples of 32.
        Returns {"foreground": (N, 3, H, W) in [0, 1]} (sigmoid)."""
        embedding, feats = self.encoder(torch.cat((image, alpha), dim=1))
        logits = self.decoder(self.aspp(embedding), feats)
        return {"foreground": torch.sigmoid(logits["os1"])}

    @torch.no_grad()
    def predict(self, image: torch.Tensor, guidance: torch.Tensor | None = None, alpha: torch.Tensor | None = None,
                forward: ForwardFn | None = None) -> torch.Tensor:
        """image (N, 3, H, W) sRGB in [0, 1], any H, W; alpha (N, 1, H, W) in [0, 1].
        Returns foreground (N, 3, H, W) in [0, 1]. Pads / crops like the PRN; `guidance` is unused."""
        if alpha is None:
            raise ValueError("the foreground net needs an alpha matte")
        forward = forward or self.forward
        n, _, h, w = image.shape
        if alpha.dim() == 3:
            alpha = alpha[:, None]
        pad = official_padding(h, w)
        x = reflect_pad(normalize_image(image.float()), pad)
        a = reflect_pad(alpha.float().clamp(0.0, 1.0).to(image.device), pad)
        fg = forward(x, a)["foreground"]
        return fg[:, :, pad[2]: pad[2] + h, pad[0]: pad[0] + w].clamp(0.0, 1.0)

    def onnx_example_inputs(self, h: int = 512, w: int = 512) -> tuple[torch.Tensor, torch.Tensor]:
        """(image (1, 3, h, w) normalised, alpha (1, 1, h, w)); h, w multiples of 32."""
        g = torch.Generator().manual_seed(0)
        image = normalize_image(torch.rand(1, 3, h, w, generator=g))
        alpha = torch.linspace(0, 1, w).expand(1, 1, h, w).contiguous()
        return image, alpha


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

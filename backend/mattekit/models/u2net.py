"""U²-Net (small, "u2netp"): Qin et al., *U²-Net: Going Deeper with Nested U-Structure for
Salient Object Detection*, Pattern Recognition 2020 (xuebinqin/U-2-Net, Apache-2.0).

Six encoder stages of residual U-blocks (RSU-7, 6, 5, 4, 4F, 4F: each a small U-Net with its
own pooling, 16 middle / 64 output channels), five decoder stages, six 3x3 side outputs
upsampled to the input size and a 1x1 fusion conv. Every REBNCONV here is a convolution with a
bias and a ReLU: the released ONNX export (the one `mattekit models fetch u2netp` installs)
folded each BatchNorm into the convolution before it, so a fine-tuned copy keeps them folded
(frozen statistics; the same reason MODNet's torch copy keeps its backbone's folded).

`from_onnx` converts that export into this module (parity with onnxruntime is checked by
`mattekit.packaged.torch_copy`). Inference follows rembg: the image squashed to `size`²,
``x / max(x)``, ImageNet mean/std; the fused side output; min–max over the frame when
`config.minmax` (what the packaged model needs: its raw output rarely spans 0..1).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from .registry import register_model

IMAGENET = {"mean": (0.485, 0.456, 0.406), "std": (0.229, 0.224, 0.225)}


@dataclass
class U2NetConfig:
    #: the square side the whole image is resized to (the released model: 320)
    size: int = 320
    #: min–max the output over the frame (rembg's rule for the released weights)
    minmax: bool = True


class Conv(nn.Sequential):
    """3x3 conv (+bias, BatchNorm folded) + ReLU at dilation `d`."""

    def __init__(self, cin: int, cout: int, d: int = 1):
        super().__init__(nn.Conv2d(cin, cout, 3, padding=d, dilation=d), nn.ReLU(inplace=True))


def _up(x: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    return F.interpolate(x, size=like.shape[-2:], mode="bilinear", align_corners=False)


class RSU(nn.Module):
    """Residual U-block of `depth` levels (RSU-L). `dilated` is RSU-4F: no pooling, dilations
    1, 2, 4, 8 instead. Output = U-Net(conv_in(x)) + conv_in(x)."""

    def __init__(self, depth: int, cin: int, mid: int, cout: int, dilated: bool = False):
        super().__init__()
        self.dilated = dilated
        self.conv_in = Conv(cin, cout)
        dil = [2 ** k for k in range(depth)] if dilated else [1] * (depth - 1) + [2]
        self.down = nn.ModuleList([Conv(cout if k == 0 else mid, mid, dil[k]) for k in range(depth)])
        self.up = nn.ModuleList([Conv(2 * mid, cout if k == 0 else mid, dil[k]) for k in range(depth - 1)])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        hin = self.conv_in(x)
        skips, h = [], hin
        for k, conv in enumerate(self.down):
            if k and not self.dilated and k < len(self.down) - 1:
                h = F.max_pool2d(h, 2, 2, ceil_mode=True)
            h = conv(h)
            skips.append(h)
        h = skips.pop()
        for k in range(len(self.up) - 1, -1, -1):
            skip = skips.pop()
            # the innermost pair shares a size; dilated blocks never change it
            same = self.dilated or k == len(self.up) - 1
            h = self.up[k](torch.cat([h if same else _up(h, skip), skip], 1))
        return h + hin


@register_model("u2netp", U2NetConfig, task="trimap_free")
class U2NetP(nn.Module):
    """forward(x (N,3,H,W) ImageNet-normalised) -> 7 sigmoid maps (N,1,H,W): fused, then sides 1..6."""

    normalization = IMAGENET
    onnx_input_names = ("image",)
    onnx_output_names = ("fused", "side1", "side2", "side3", "side4", "side5", "side6")
    onnx_dynamic_hw = False  # the whole frame is always squashed to config.size²

    def __init__(self, config: U2NetConfig | None = None):
        super().__init__()
        self.config = config or U2NetConfig()
        spec = [(7, False), (6, False), (5, False), (4, False), (4, True), (4, True)]
        self.encoder = nn.ModuleList([RSU(d, 3 if k == 0 else 64, 16, 64, f) for k, (d, f) in enumerate(spec)])
        self.decoder = nn.ModuleList([RSU(d, 128, 16, 64, f) for d, f in spec[:5]])
        self.side = nn.ModuleList([nn.Conv2d(64, 1, 3, padding=1) for _ in range(6)])
        self.fuse = nn.Conv2d(6, 1, 1)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        feats, h = [], x
        for k, stage in enumerate(self.encoder):
            if k:
                h = F.max_pool2d(h, 2, 2, ceil_mode=True)
            h = stage(h)
            feats.append(h)
        dec = [feats[5]]
        h = feats[5]
        for k in range(4, -1, -1):
            h = self.decoder[k](torch.cat([_up(h, feats[k]), feats[k]], 1))
            dec.insert(0, h)
        sides = [self.side[0](dec[0])] + [_up(self.side[k](dec[k]), x) for k in range(1, 6)]
        fused = self.fuse(torch.cat(sides, 1))
        return tuple(torch.sigmoid(s) for s in [fused, *sides])

    @staticmethod
    def normalise(image: torch.Tensor) -> torch.Tensor:
        """sRGB [0,1] (N,3,H,W) -> ``x / max(x)``, ImageNet mean/std (rembg's rule), same size."""
        x = image / image.amax(dim=(1, 2, 3), keepdim=True).clamp_min(1e-6)
        mean = x.new_tensor(IMAGENET["mean"]).view(1, 3, 1, 1)
        std = x.new_tensor(IMAGENET["std"]).view(1, 3, 1, 1)
        return (x - mean) / std

    def prepare(self, image: torch.Tensor) -> torch.Tensor:
        """sRGB [0,1] (N,3,H,W) -> the network's input at size²."""
        s = self.config.size
        shrink = min(image.shape[-2:]) > s
        small = F.interpolate(image, size=(s, s), mode="area" if shrink else "bilinear",
                              align_corners=None if shrink else False)
        return self.normalise(small)

    def finish(self, out: torch.Tensor) -> torch.Tensor:
        if not self.config.minmax:
            return out
        lo = out.amin(dim=(1, 2, 3), keepdim=True)
        hi = out.amax(dim=(1, 2, 3), keepdim=True)
        return torch.where(hi - lo > 1e-6, (out - lo) / (hi - lo).clamp_min(1e-6), torch.zeros_like(out))

    def predict(self, image: torch.Tensor, guidance: torch.Tensor | None = None,
                alpha: torch.Tensor | None = None, forward: Callable | None = None) -> torch.Tensor:
        """image (N,3,H,W) sRGB in [0,1], any H, W -> alpha (N,1,H,W) in [0,1]."""
        fwd = forward or self.forward
        h, w = image.shape[-2:]
        out = self.finish(fwd(self.prepare(image))[0])
        return F.interpolate(out, size=(h, w), mode="bilinear", align_corners=False).clamp(0, 1)

    def onnx_example_inputs(self, h: int, w: int) -> tuple[torch.Tensor]:
        return (torch.zeros(1, 3, self.config.size, self.config.size),)


def from_onnx(path: str, config: U2NetConfig | None = None) -> dict:
    """The released u2netp ONNX export -> our state_dict.

    Its 119 convolutions are ours in execution order (the exporter writes nodes in the order
    forward runs them); every shape is checked, and where the export kept a PyTorch name
    (`side1.weight`, `outconv.bias`) that name must be the one ours maps to. Raises ValueError
    on any mismatch."""
    import numpy as np
    import onnx
    from onnx import numpy_helper

    graph = onnx.load(str(path)).graph
    tensors = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
    model = U2NetP(config or U2NetConfig()).eval()
    called: list[str] = []
    names = {id(m): n for n, m in model.named_modules()}
    hooks = [m.register_forward_hook(lambda mod, i, o: called.append(names[id(mod)]))
             for m in model.modules() if isinstance(m, nn.Conv2d)]
    with torch.no_grad():
        model(torch.zeros(1, 3, 64, 64))
    for h in hooks:
        h.remove()
    convs = [n for n in graph.node if n.op_type == "Conv"]
    if len(convs) != len(called):
        raise ValueError(f"{path}: {len(convs)} convolutions, u2netp has {len(called)}: not the u2netp export")
    official = {f"side.{k}": f"side{k + 1}" for k in range(6)} | {"fuse": "outconv"}
    sd = {k: v.clone() for k, v in model.state_dict().items()}
    for name, node in zip(called, convs):
        if len(node.input) < 3:
            raise ValueError(f"{path}: {node.name} has no bias; ours ({name}) needs one")
        for part, src in (("weight", node.input[1]), ("bias", node.input[2])):
            key, value = f"{name}.{part}", tensors[src]
            if not src.isdigit() and name in official and src != f"{official[name]}.{part}":
                raise ValueError(f"{path}: {src} is where ours expects {official[name]}.{part}")
            if tuple(sd[key].shape) != tuple(value.shape):
                raise ValueError(f"{path}: {src} has shape {tuple(value.shape)}, ours ({key}) {tuple(sd[key].shape)}")
            sd[key] = torch.from_numpy(np.array(value, copy=True))
    return sd

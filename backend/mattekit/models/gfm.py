"""GFM: Glance and Focus Matting (Li et al., IJCV 2021), checkpoint-compatible with
JizhiziLi/GFM `core/gfm.py` (commit 4b15ee0) for the ResNet-34 backbones.

One shared encoder feeds two decoders:

- **Glance** (semantic): a PSP module on the deepest feature, whose upsampled output
  (`psp{k}`) is concatenated into every glance decoder block; ends in a per-channel
  sigmoid over 3 classes (TT: bg / transition / fg) or 2 (FT, BT).
- **Focus** (detail): a bridge block (three dilation-2 convs) on the deepest feature, then
  U-Net skips from the encoder; ends in a 1-channel sigmoid.
- **Collaborative matting** fuses them (`collaborative_matting`).

Backbones (`GFMConfig.backbone`):

- ``"r34"``    GFM(r): torchvision ResNet-34, features at strides 2..32.
- ``"r34_2b"`` GFM(r2b): a new full-resolution 3x3 stem replaces conv1/maxpool, ResNet-34
  layer1..4 at strides 1..8, plus encoder5/encoder6 (max-pool + 3 BasicBlocks) at 16, 32.
- ``"mobilenetv2"`` a light CPU variant (no official checkpoint): MODNet's MobileNetV2
  pyramid, the deepest level projected to `light_width` channels.

All three share one decoder rule: with encoder channels c_0..c_T and strides s_0..s_T,
decoder k (k = T..1) maps 2*c_k -> c_k -> c_k -> c_{k-1} (each conv + BN + ReLU) and
upsamples by s_k / s_{k-1}; psp{k} maps c_T -> c_{k-1} and upsamples by s_T / s_{k-1}.
The head (decoder0) is three convs on cat(psp1, d1) / cat(d1, e0) when s_0 = 2 (r34), or a
single 3x3 conv on d1 when s_0 = 1 (r34_2b). This reproduces the official module tree.

Input side lengths must be multiples of 32. RIM (the RoSTa integration module) is not
implemented; TT, FT and BT are.

State-dict differences from the official checkpoints (handled by
`from_official_state_dict` / `to_official_state_dict`):

- The official model registers ResNet parts twice (`encoder0..4.*` alias `resnet.*`); here
  they exist once, under `resnet.*`.
- Parameters the official forward never uses are not registered here, so that training has
  no dead parameters and the ONNX graph carries no dead weights: `resnet.fc` (both), and in
  r34_2b `resnet.conv1`, `resnet.bn1` and `psp1`. Import drops them; export re-creates them
  with neutral values (zero weights; BatchNorm at identity). Their values never affect an
  output of either implementation, so an exported checkpoint loads strictly into the
  official code and predicts the same.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from .registry import register_model
from .resnet import BasicBlock, resnet34

BACKBONES = ("r34", "r34_2b", "mobilenetv2")
ROSTAS = ("TT", "FT", "BT")
STRATEGIES = ("hybrid", "single")


@dataclass
class GFMConfig:
    """GFM architecture and test-time settings (defaults = official GFM(r)-TT, HYBRID test)."""

    backbone: str = "r34"
    rosta: str = "TT"
    #: Channels of the deepest feature in the "mobilenetv2" variant (after a 1x1 projection).
    light_width: int = 128
    #: The network sees image * input_scale; official = 255.0 (raw 0..255 floats, no mean/std).
    input_scale: float = 255.0
    #: "hybrid": glance pass at glance_scale + focus pass at focus_scale (official default);
    #: "single": one pass at single_scale, fusion output (official RESIZE).
    test_strategy: str = "hybrid"
    glance_scale: float = 1.0 / 3.0
    focus_scale: float = 0.5
    single_scale: float = 0.5
    #: Each pass size is floored to a multiple of 32 and capped at this (official MAX_SIZE_H/W).
    max_side: int = 1600
    #: Pass sizes are computed as if the image were first shrunk so its short side is at most
    #: this (official `test_samples.py`, the README demo); None: no shrink (AM-2k evaluation).
    max_short_side: int | None = 1080


def official_config(variant: str) -> GFMConfig:
    """Config of a released GFM checkpoint: "r34" (gfm_r34_tt.pth) or "r34_2b" (gfm_r34_2b_tt.pth)."""
    if variant not in ("r34", "r34_2b"):
        raise ValueError(f"unknown official GFM variant {variant!r}; known: r34, r34_2b")
    return GFMConfig(backbone=variant, rosta="TT")


# --------------------------------------------------------------------------- building blocks


def conv_up_psp(in_channels: int, out_channels: int, scale: float) -> nn.Sequential:
    """psp{k}: 3x3 conv + BN + ReLU, then bilinear upsampling by `scale` (align_corners=False)."""
    return nn.Sequential(nn.Conv2d(in_channels, out_channels, 3, padding=1), nn.BatchNorm2d(out_channels),
                         nn.ReLU(inplace=True),
                         nn.Upsample(scale_factor=float(scale), mode="bilinear", align_corners=False))


def bridge_block(channels: int) -> nn.Sequential:
    """Focus bridge: three dilation-2 3x3 conv + BN + ReLU (receptive field without striding)."""
    layers: list[nn.Module] = []
    for _ in range(3):
        layers += [nn.Conv2d(channels, channels, 3, dilation=2, padding=2), nn.BatchNorm2d(channels),
                   nn.ReLU(inplace=True)]
    return nn.Sequential(*layers)


def decoder_block(in_ch: int, mid_ch: int, out_ch: int, last_bnrelu: bool, upsample: float) -> nn.Sequential:
    """Three 3x3 convs (BN + ReLU after the first two, and after the third if `last_bnrelu`),
    then bilinear x`upsample` when it is not 1. Indices match the official `build_decoder`."""
    layers: list[nn.Module] = [
        nn.Conv2d(in_ch, mid_ch, 3, padding=1), nn.BatchNorm2d(mid_ch), nn.ReLU(inplace=True),
        nn.Conv2d(mid_ch, mid_ch, 3, padding=1), nn.BatchNorm2d(mid_ch), nn.ReLU(inplace=True),
        nn.Conv2d(mid_ch, out_ch, 3, padding=1)]
    if last_bnrelu:
        layers += [nn.BatchNorm2d(out_ch), nn.ReLU(inplace=True)]
    if upsample != 1:
        # The official nn.Upsample leaves align_corners unset, i.e. False.
        layers.append(nn.Upsample(scale_factor=float(upsample), mode="bilinear", align_corners=False))
    return nn.Sequential(*layers)


def _pool_matrix(n: int, size: int, like: torch.Tensor) -> torch.Tensor:
    """(size, n) averaging matrix of adaptive average pooling along one axis of length n.

    Bin i covers [floor(i*n/size), ceil((i+1)*n/size)), PyTorch's AdaptiveAvgPool rule. Built
    from arange so it also works when n is symbolic (dynamic-shape ONNX export)."""
    i = torch.arange(size, device=like.device)
    start = torch.div(i * n, size, rounding_mode="floor")
    end = torch.div((i + 1) * n + size - 1, size, rounding_mode="floor")
    pos = torch.arange(n, device=like.device)
    mask = ((pos[None, :] >= start[:, None]) & (pos[None, :] < end[:, None])).to(like.dtype)
    return mask / mask.sum(1, keepdim=True)


class AdaptiveAvgPool2d(nn.AdaptiveAvgPool2d):
    """nn.AdaptiveAvgPool2d whose ONNX export keeps H, W dynamic.

    Eager mode calls the native op (bit-identical to the official model); while exporting it
    pools with two small averaging matrices, which ONNX can express for any input size
    (the native op exports only for output size 1 or a static input size)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not torch.onnx.is_in_onnx_export():
            return super().forward(x)
        oh, ow = self.output_size if isinstance(self.output_size, tuple) else (self.output_size,) * 2
        ph = _pool_matrix(x.shape[-2], oh, x)
        pw = _pool_matrix(x.shape[-1], ow, x)
        return torch.einsum("ih,nchw,jw->ncij", ph, x, pw)


class PSPModule(nn.Module):
    """Pyramid pooling: average-pool to each size, 1x1 conv, upsample back (bilinear,
    align_corners=True as official), concat with the input, 1x1 bottleneck + ReLU."""

    def __init__(self, features: int, out_features: int, sizes: tuple[int, ...] = (1, 3, 5)):
        super().__init__()
        self.stages = nn.ModuleList(
            nn.Sequential(AdaptiveAvgPool2d((s, s)), nn.Conv2d(features, features, 1, bias=False)) for s in sizes)
        self.bottleneck = nn.Conv2d(features * (len(sizes) + 1), out_features, kernel_size=1)
        self.relu = nn.ReLU()

    def forward(self, feats: torch.Tensor) -> torch.Tensor:
        h, w = feats.shape[-2:]
        priors = [F.interpolate(stage(feats), size=(h, w), mode="bilinear", align_corners=True)
                  for stage in self.stages]
        return self.relu(self.bottleneck(torch.cat(priors + [feats], 1)))


def collaborative_matting(rosta: str, glance: torch.Tensor, focus: torch.Tensor) -> torch.Tensor:
    """Fuse glance (N,C,H,W) and focus (N,1,H,W) into alpha (N,1,H,W) in [0,1].

    TT: focus in the transition class, 1 in foreground, 0 in background (argmax takes the
    first index on ties, like the official torch.max). FT: clamp(class + focus, <=1), class
    1 = foreground. BT: clamp(class - focus, >=0), class 1 = not background."""
    index = glance.argmax(1, keepdim=True)
    if rosta == "TT":
        return focus * (index == 1).to(focus.dtype) + (index == 2).to(focus.dtype)
    cls = index.to(focus.dtype)
    if rosta == "FT":
        return torch.clamp(cls + focus, max=1.0)
    if rosta == "BT":
        return torch.clamp(cls - focus, min=0.0)
    raise ValueError(f"rosta must be one of {ROSTAS}, got {rosta!r}")


# --------------------------------------------------------------------------- the model


def _level_spec(cfg: GFMConfig) -> tuple[list[int], list[int]]:
    """Encoder channels and strides per level for a backbone."""
    if cfg.backbone == "r34":
        return [64, 64, 128, 256, 512], [2, 4, 8, 16, 32]
    if cfg.backbone == "r34_2b":
        return [64, 64, 128, 256, 512, 512, 512], [1, 1, 2, 4, 8, 16, 32]
    if cfg.backbone == "mobilenetv2":
        return [16, 24, 32, 96, cfg.light_width], [2, 4, 8, 16, 32]
    raise ValueError(f"backbone must be one of {BACKBONES}, got {cfg.backbone!r}")


@register_model("gfm", GFMConfig, task="trimap_free")
class GFM(nn.Module):
    """GFM network. `forward(x)` -> (glance (N,C,H,W), focus (N,1,H,W), fusion (N,1,H,W)),
    all sigmoid outputs in [0,1]; x is (N,3,H,W) already scaled (official: 0..255), H and W
    multiples of 32. `predict` does the official test-time pre/post-processing."""

    onnx_input_names = ("image",)
    onnx_output_names = ("glance", "focus", "fusion")
    #: Dynamic H/W export works: Upsample uses scale factors, PSP's interpolate takes the
    #: runtime size, and PSP pooling switches to matrix pooling while exporting.
    onnx_dynamic_hw = True

    def __init__(self, config: GFMConfig | None = None):
        super().__init__()
        cfg = config if config is not None else GFMConfig()
        if cfg.rosta not in ROSTAS:
            raise ValueError(f"rosta must be one of {ROSTAS} (RIM is not implemented), got {cfg.rosta!r}")
        if cfg.test_strategy not in STRATEGIES:
            raise ValueError(f"test_strategy must be one of {STRATEGIES}, got {cfg.test_strategy!r}")
        self.config = cfg
        ch, st = _level_spec(cfg)
        self.channels, self.strides = ch, st
        top = len(ch) - 1
        gd = 3 if cfg.rosta == "TT" else 2

        # Registration order follows the official module order, so state_dict() does too.
        if cfg.backbone == "r34":
            self.resnet = resnet34(num_classes=None)
        elif cfg.backbone == "r34_2b":
            self.resnet = resnet34(num_classes=None, stem=False)
            self.encoder0 = nn.Sequential(nn.Conv2d(3, 64, 3, padding=1), nn.BatchNorm2d(64), nn.ReLU(inplace=True))
            for name in ("encoder5", "encoder6"):
                self.add_module(name, nn.Sequential(nn.MaxPool2d(2, 2, ceil_mode=True),
                                                    *(BasicBlock(512, 512) for _ in range(3))))
        else:
            from .mobilenetv2 import MobileNetV2Backbone

            self.backbone = MobileNetV2Backbone(3)
            self.enc_proj = nn.Sequential(nn.Conv2d(self.backbone.enc_channels[-1], ch[-1], 1, bias=False),
                                          nn.BatchNorm2d(ch[-1]), nn.ReLU(inplace=True))

        self.psp_module = PSPModule(ch[top], ch[top], (1, 3, 5))
        self.three_conv_head = st[0] > 1
        for k in range(top, 1 if not self.three_conv_head else 0, -1):
            self.add_module(f"psp{k}", conv_up_psp(ch[top], ch[k - 1], st[top] // st[k - 1]))
        for k in range(top, 0, -1):
            self.add_module(f"decoder{k}_g", decoder_block(2 * ch[k], ch[k], ch[k - 1], True, st[k] // st[k - 1]))
        self.bridge_block = bridge_block(ch[top])
        for k in range(top, 0, -1):
            self.add_module(f"decoder{k}_f", decoder_block(2 * ch[k], ch[k], ch[k - 1], True, st[k] // st[k - 1]))
        if self.three_conv_head:
            self.decoder0_g = decoder_block(2 * ch[0], ch[0], gd, False, st[0])
            self.decoder0_f = decoder_block(2 * ch[0], ch[0], 1, False, st[0])
        else:
            self.decoder0_g = nn.Sequential(nn.Conv2d(ch[0], gd, 3, padding=1))
            self.decoder0_f = nn.Sequential(nn.Conv2d(ch[0], 1, 3, padding=1))

    # ------------------------------------------------------------------ network

    def encode(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Encoder pyramid e_0..e_T (channels `self.channels`, strides `self.strides`)."""
        if self.config.backbone == "r34":
            return self.resnet.features(x)
        if self.config.backbone == "r34_2b":
            feats = [self.encoder0(x)]
            feats += self.resnet.features(feats[0])
            feats.append(self.encoder5(feats[-1]))
            feats.append(self.encoder6(feats[-1]))
            return feats
        feats = self.backbone(x)
        return feats[:-1] + [self.enc_proj(feats[-1])]

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(N,3,H,W) scaled image -> (glance_sigmoid, focus_sigmoid, fusion_sigmoid)."""
        e = self.encode(x)
        top = len(e) - 1

        psp = self.psp_module(e[top])
        h = torch.cat((psp, e[top]), 1)
        for k in range(top, 0, -1):
            d = getattr(self, f"decoder{k}_g")(h)
            h = torch.cat((getattr(self, f"psp{k}")(psp), d), 1) if (k > 1 or self.three_conv_head) else d
        glance = torch.sigmoid(self.decoder0_g(h))

        bb = self.bridge_block(e[top])
        h = torch.cat((bb, e[top]), 1)
        for k in range(top, 0, -1):
            d = getattr(self, f"decoder{k}_f")(h)
            h = torch.cat((d, e[k - 1]), 1) if (k > 1 or self.three_conv_head) else d
        focus = torch.sigmoid(self.decoder0_f(h))

        return glance, focus, collaborative_matting(self.config.rosta, glance, focus)

    # ------------------------------------------------------------------ inference

    def pass_size(self, h: int, w: int, ratio: float) -> tuple[int, int]:
        """Network input size for one test pass over an (h, w) image (official rule:
        int(side*ratio) floored to a multiple of 32, capped at max_side; at least 32 here)."""
        cfg = self.config
        short = min(h, w)
        if cfg.max_short_side is not None and short > cfg.max_short_side:
            # Official demo: cv2.resize so the short side is max_short_side, long side int(...).
            if h >= w:
                h, w = int(cfg.max_short_side * h / w), cfg.max_short_side
            else:
                h, w = cfg.max_short_side, int(cfg.max_short_side * w / h)

        def side(n: int) -> int:
            n = int(n * ratio)
            return max(32, min(cfg.max_side, n - n % 32))

        return side(h), side(w)

    def predict(self, image: torch.Tensor, guidance: torch.Tensor | None = None,
                alpha: torch.Tensor | None = None, forward: Callable | None = None) -> torch.Tensor:
        """image (N,3,H,W) sRGB in [0,1], any H, W -> alpha (N,1,H,W) in [0,1].

        `forward` replaces `self.forward` (e.g. an onnxruntime session with the same inputs
        and outputs). `guidance` and `alpha` are unused (GFM needs no guidance).

        Resizing differs slightly from the official skimage `resize` (order 1, mode reflect,
        Gaussian pre-filter with sigma=(s-1)/2 when shrinking): here downscaling is torch
        bilinear with antialias=True (a scale-wide triangle filter), upscaling plain bilinear
        (align_corners=False, i.e. the same pixel-centre mapping; borders clamp, not reflect).
        """
        fwd = self.forward if forward is None else forward
        cfg = self.config
        n, _, h, w = image.shape

        def run(ratio: float):
            size = self.pass_size(h, w, ratio)
            x = F.interpolate(image, size=size, mode="bilinear", align_corners=False, antialias=True)
            return fwd(x * cfg.input_scale)

        def up(t: torch.Tensor) -> torch.Tensor:
            return F.interpolate(t, size=(h, w), mode="bilinear", align_corners=False)

        if cfg.test_strategy == "single":
            return up(run(cfg.single_scale)[2]).clamp(0.0, 1.0)

        glance_out = run(cfg.glance_scale)
        if self.pass_size(h, w, cfg.glance_scale) == self.pass_size(h, w, cfg.focus_scale):
            focus_out = glance_out  # both passes would see the same input
        else:
            focus_out = run(cfg.focus_scale)
        index = glance_out[0].argmax(1, keepdim=True)
        focus = up(focus_out[1])
        if cfg.rosta == "TT":
            # Official: the argmax trimap {0,128,255} is resized back bilinearly and every
            # pixel not exactly 0 or 255 takes focus, so focus also covers the interpolated
            # seams between bg and fg. "Exactly 0/255" = no other class contributes, tested
            # exactly by upsampling the complement indicators (a sum of zeros stays zero).
            not_bg = up((index != 0).to(image.dtype))
            not_fg = up((index != 2).to(image.dtype))
            out = torch.where(not_fg == 0, torch.ones_like(focus),
                              torch.where(not_bg == 0, torch.zeros_like(focus), focus))
        elif cfg.rosta == "FT":
            out = up(index.to(image.dtype)) + focus
        else:
            out = up(index.to(image.dtype)) - focus
        return out.clamp(0.0, 1.0)

    def onnx_example_inputs(self, h: int, w: int) -> tuple[torch.Tensor]:
        """Example network input for export: (1,3,h',w') in 0..input_scale, sides rounded up to x32."""
        h, w = -(-h // 32) * 32, -(-w // 32) * 32
        return (torch.rand(1, 3, h, w) * self.config.input_scale,)


# --------------------------------------------------------------------------- checkpoints


def _alias_prefixes(backbone: str) -> dict[str, str]:
    """Official alias prefix -> canonical prefix (both registered in the official GFM)."""
    layers = {f"encoder{k}.": f"resnet.layer{k}." for k in (2, 3, 4)}
    if backbone == "r34":
        return {"encoder0.0.": "resnet.conv1.", "encoder0.1.": "resnet.bn1.", "encoder1.1.": "resnet.layer1.", **layers}
    return {"encoder1.": "resnet.layer1.", **layers}


def _unused_shapes(backbone: str) -> dict[str, tuple[int, ...]]:
    """Official keys that the official forward never reads, with their shapes."""

    def bn(p: str, c: int) -> dict[str, tuple[int, ...]]:
        return {p + "weight": (c,), p + "bias": (c,), p + "running_mean": (c,), p + "running_var": (c,),
                p + "num_batches_tracked": ()}

    fc = {"resnet.fc.weight": (1000, 512), "resnet.fc.bias": (1000,)}
    if backbone == "r34":
        return fc
    return {"resnet.conv1.weight": (64, 3, 7, 7), **bn("resnet.bn1.", 64), **fc,
            "psp1.0.weight": (64, 512, 3, 3), "psp1.0.bias": (64,), **bn("psp1.1.", 64)}


def _neutral(key: str, shape: tuple[int, ...]) -> torch.Tensor:
    if key.endswith("num_batches_tracked"):
        return torch.zeros(shape, dtype=torch.int64)
    if key.endswith("running_var") or (key.endswith(".weight") and len(shape) == 1):
        return torch.ones(shape)
    return torch.zeros(shape)


def _check_official(config: GFMConfig) -> None:
    if config.backbone not in ("r34", "r34_2b"):
        raise ValueError(f"no official GFM checkpoint format for backbone {config.backbone!r}")


def from_official_state_dict(sd: dict[str, torch.Tensor], config: GFMConfig) -> dict[str, torch.Tensor]:
    """Official GFM state_dict (optionally `module.`-prefixed) -> this model's state_dict.

    Alias keys (`encoder0..4.*`) are dropped after checking they equal their `resnet.*`
    canonical; unused keys (`resnet.fc`, r34_2b `resnet.conv1/bn1`, `psp1`) are dropped."""
    _check_official(config)
    if sd and all(k.startswith("module.") for k in sd):
        sd = {k[len("module."):]: v for k, v in sd.items()}
    aliases = _alias_prefixes(config.backbone)
    unused = _unused_shapes(config.backbone)
    out: dict[str, torch.Tensor] = {}
    for key, value in sd.items():
        if key in unused:
            continue
        prefix = next((p for p in aliases if key.startswith(p)), None)
        if prefix is not None:
            canonical = aliases[prefix] + key[len(prefix):]
            if canonical not in sd or not torch.equal(sd[canonical], value):
                raise ValueError(f"alias {key} differs from (or lacks) its canonical {canonical}")
            continue
        out[key] = value
    return out


def to_official_state_dict(sd: dict[str, torch.Tensor], config: GFMConfig) -> dict[str, torch.Tensor]:
    """This model's state_dict -> the official key list and order (aliases as copies, unused
    keys with neutral values), loadable by the official `GFM(args)` with strict=True."""
    _check_official(config)
    unused = _unused_shapes(config.backbone)
    out: dict[str, torch.Tensor] = {}

    def put_unused(prefix: str) -> None:
        for k, shape in unused.items():
            if k.startswith(prefix):
                out[k] = _neutral(k, shape)

    if config.backbone == "r34_2b":
        put_unused("resnet.conv1.")
        put_unused("resnet.bn1.")
    out.update((k, v) for k, v in sd.items() if k.startswith("resnet."))
    put_unused("resnet.fc.")
    if config.backbone == "r34_2b":
        out.update((k, v) for k, v in sd.items() if k.startswith("encoder0."))
    for alias, canonical in _alias_prefixes(config.backbone).items():
        out.update((alias + k[len(canonical):], v.clone()) for k, v in sd.items() if k.startswith(canonical))
    rest = [k for k in sd if not k.startswith(("resnet.", "encoder0."))]
    for i, k in enumerate(rest):
        out[k] = sd[k]
        # psp1 (unused in r34_2b) sits right after psp2 in the official order.
        if k.startswith("psp2.") and not (i + 1 < len(rest) and rest[i + 1].startswith("psp2.")):
            put_unused("psp1.")
    return out

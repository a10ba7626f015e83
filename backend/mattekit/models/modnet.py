"""MODNet: real-time trimap-free portrait matting (Ke et al., AAAI 2022).

Two variants (`MODNetConfig.semantic_head`):
- ``"se"`` (default): the public code (ZHKKKe/MODNet @ 28165a4, `src/models/modnet.py`): SE block
  (reduction 4) on the stride-32 features, IBNorm, hr_channels=32. Module paths equal the official ones,
  except that the backbone is registered once (`backbone.*`; the official `lr_branch.backbone.*` keys are
  aliases), so `from_official_state_dict` only drops aliases and the DataParallel prefix.
- ``"easpp"``: the paper's efficient ASPP in place of the SE block (see `EASPP`). No official weights.

`forward(img, inference)` returns `(pred_semantic, pred_detail, pred_matte)` like the official code:
semantic (N,1,H/16,W/16), detail and matte (N,1,H,W), all sigmoids; the first two are None when
`inference` is True. `img` is normalised to [-1, 1], sides multiples of 32.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn as nn
import torch.nn.functional as F

from .mobilenetv2 import MobileNetV2Backbone
from .registry import register_model

#: Official reference size: short side scaled to this when the image is wholly smaller or larger.
REF_SIZE = 512


@dataclass
class MODNetConfig:
    in_channels: int = 3
    hr_channels: int = 32
    backbone_alpha: float = 1.0
    backbone_expansion: float = 6
    #: "se" (public code) or "easpp" (paper).
    semantic_head: str = "se"
    #: e-ASPP atrous rates (the paper gives m=5 but not the rates; ours).
    easpp_dilations: tuple[int, ...] = (1, 2, 4, 6, 8)
    #: Short side used by `predict` (official: 512).
    ref_size: int = REF_SIZE


class IBNorm(nn.Module):
    """BatchNorm on the first C//2 channels, parameter-free InstanceNorm on the rest."""

    def __init__(self, in_channels: int):
        super().__init__()
        self.bnorm_channels = in_channels // 2
        self.inorm_channels = in_channels - self.bnorm_channels
        self.bnorm = nn.BatchNorm2d(self.bnorm_channels, affine=True)
        self.inorm = nn.InstanceNorm2d(self.inorm_channels, affine=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        bn_x = self.bnorm(x[:, : self.bnorm_channels].contiguous())
        in_x = self.inorm(x[:, self.bnorm_channels :].contiguous())
        return torch.cat((bn_x, in_x), 1)


class Conv2dIBNormRelu(nn.Module):
    """Conv2d (+ IBNorm) (+ ReLU), kept in `self.layers` for the official key names."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int = 1,
                 padding: int = 0, dilation: int = 1, groups: int = 1, bias: bool = True,
                 with_ibn: bool = True, with_relu: bool = True):
        super().__init__()
        layers: list[nn.Module] = [nn.Conv2d(in_channels, out_channels, kernel_size, stride=stride,
                                             padding=padding, dilation=dilation, groups=groups, bias=bias)]
        if with_ibn:
            layers.append(IBNorm(out_channels))
        if with_relu:
            layers.append(nn.ReLU(inplace=True))
        self.layers = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)


class SEBlock(nn.Module):
    """Squeeze-and-excitation channel reweighting."""

    def __init__(self, in_channels: int, out_channels: int, reduction: int = 1):
        super().__init__()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Sequential(nn.Linear(in_channels, in_channels // reduction, bias=False),
                                nn.ReLU(inplace=True),
                                nn.Linear(in_channels // reduction, out_channels, bias=False),
                                nn.Sigmoid())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = self.fc(self.pool(x).flatten(1))
        return x * w[:, :, None, None]


class EASPP(nn.Module):
    """Efficient ASPP (MODNet paper): reduce c -> c/4 (1x1), m depth-wise atrous 3x3 convs,
    depth-wise fusion of the m scales per channel, one point-wise conv restoring c channels.

    Parameters ~ (2c^2 + (k^2+1) m c) / 4, as in the paper. (N, c, h, w) -> (N, c, h, w).
    """

    def __init__(self, channels: int, dilations: tuple[int, ...] = (1, 2, 4, 6, 8), reduction: int = 4):
        super().__init__()
        mid = channels // reduction
        self.m = len(dilations)
        self.reduce = Conv2dIBNormRelu(channels, mid, 1, bias=False)
        self.branches = nn.ModuleList(
            nn.Conv2d(mid, mid, 3, padding=d, dilation=d, groups=mid, bias=False) for d in dilations)
        # groups=mid on channel-major stacked input: each channel mixes only its own m scales.
        self.fuse = nn.Conv2d(mid * self.m, mid, 1, groups=mid, bias=False)
        self.fuse_norm = nn.Sequential(nn.BatchNorm2d(mid), nn.ReLU(inplace=True))
        self.restore = Conv2dIBNormRelu(mid, channels, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.reduce(x)
        y = torch.stack([b(y) for b in self.branches], 2).flatten(1, 2)  # (N, mid*m, h, w)
        return self.restore(self.fuse_norm(self.fuse(y)))


def _up2(x: torch.Tensor) -> torch.Tensor:
    return F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)


class LRBranch(nn.Module):
    """Semantic branch: backbone -> SE / e-ASPP -> 1/16 -> 1/8 features (+ 1/16 semantic logits)."""

    def __init__(self, backbone: MobileNetV2Backbone, semantic_head: str = "se",
                 easpp_dilations: tuple[int, ...] = (1, 2, 4, 6, 8)):
        super().__init__()
        # Plain attribute, not a submodule: MODNet owns `backbone`; the official code also
        # registers it here, which is where the alias keys lr_branch.backbone.* come from.
        object.__setattr__(self, "backbone", backbone)
        enc = backbone.enc_channels
        if semantic_head == "se":
            self.se_block = SEBlock(enc[4], enc[4], reduction=4)
        elif semantic_head == "easpp":
            self.easpp = EASPP(enc[4], easpp_dilations)
        else:
            raise ValueError(f"semantic_head must be 'se' or 'easpp', got {semantic_head!r}")
        self.semantic_head = semantic_head
        self.conv_lr16x = Conv2dIBNormRelu(enc[4], enc[3], 5, stride=1, padding=2)
        self.conv_lr8x = Conv2dIBNormRelu(enc[3], enc[2], 5, stride=1, padding=2)
        self.conv_lr = Conv2dIBNormRelu(enc[2], 1, 3, stride=2, padding=1, with_ibn=False, with_relu=False)

    def forward(self, img: torch.Tensor, inference: bool):
        enc2x, enc4x, _, _, enc32x = self.backbone(img)
        enc32x = self.se_block(enc32x) if self.semantic_head == "se" else self.easpp(enc32x)
        lr8x = self.conv_lr8x(_up2(self.conv_lr16x(_up2(enc32x))))
        pred_semantic = None if inference else torch.sigmoid(self.conv_lr(lr8x))
        return pred_semantic, lr8x, [enc2x, enc4x]


class HRBranch(nn.Module):
    """Detail branch: 12 convs (<= 64 channels) at 1/4 then 1/2, full-res image before the last."""

    def __init__(self, hr_channels: int, enc_channels: list[int], in_channels: int = 3):
        super().__init__()
        hc, ic = hr_channels, in_channels
        self.tohr_enc2x = Conv2dIBNormRelu(enc_channels[0], hc, 1, stride=1, padding=0)
        self.conv_enc2x = Conv2dIBNormRelu(hc + ic, hc, 3, stride=2, padding=1)
        self.tohr_enc4x = Conv2dIBNormRelu(enc_channels[1], hc, 1, stride=1, padding=0)
        self.conv_enc4x = Conv2dIBNormRelu(2 * hc, 2 * hc, 3, stride=1, padding=1)
        self.conv_hr4x = nn.Sequential(
            # Official: 3*hc+3, which assumes lr8x has hc (= enc_channels[2] = 32) channels.
            Conv2dIBNormRelu(2 * hc + enc_channels[2] + ic, 2 * hc, 3, stride=1, padding=1),
            Conv2dIBNormRelu(2 * hc, 2 * hc, 3, stride=1, padding=1),
            Conv2dIBNormRelu(2 * hc, hc, 3, stride=1, padding=1))
        self.conv_hr2x = nn.Sequential(
            Conv2dIBNormRelu(2 * hc, 2 * hc, 3, stride=1, padding=1),
            Conv2dIBNormRelu(2 * hc, hc, 3, stride=1, padding=1),
            Conv2dIBNormRelu(hc, hc, 3, stride=1, padding=1),
            Conv2dIBNormRelu(hc, hc, 3, stride=1, padding=1))
        self.conv_hr = nn.Sequential(
            Conv2dIBNormRelu(hc + ic, hc, 3, stride=1, padding=1),
            Conv2dIBNormRelu(hc, 1, 1, stride=1, padding=0, with_ibn=False, with_relu=False))

    def forward(self, img, enc2x, enc4x, lr8x, inference: bool):
        img2x = F.interpolate(img, scale_factor=1 / 2, mode="bilinear", align_corners=False)
        img4x = F.interpolate(img, scale_factor=1 / 4, mode="bilinear", align_corners=False)
        enc2x = self.tohr_enc2x(enc2x)
        hr4x = self.conv_enc2x(torch.cat((img2x, enc2x), dim=1))
        enc4x = self.tohr_enc4x(enc4x)
        hr4x = self.conv_enc4x(torch.cat((hr4x, enc4x), dim=1))
        hr4x = self.conv_hr4x(torch.cat((hr4x, _up2(lr8x), img4x), dim=1))
        hr2x = self.conv_hr2x(torch.cat((_up2(hr4x), enc2x), dim=1))
        pred_detail = None
        if not inference:
            pred_detail = torch.sigmoid(self.conv_hr(torch.cat((_up2(hr2x), img), dim=1)))
        return pred_detail, hr2x


class FusionBranch(nn.Module):
    """Fuses the upsampled semantic features with the detail features into the matte."""

    def __init__(self, hr_channels: int, enc_channels: list[int], in_channels: int = 3):
        super().__init__()
        hc = hr_channels
        self.conv_lr4x = Conv2dIBNormRelu(enc_channels[2], hc, 5, stride=1, padding=2)
        self.conv_f2x = Conv2dIBNormRelu(2 * hc, hc, 3, stride=1, padding=1)
        self.conv_f = nn.Sequential(
            Conv2dIBNormRelu(hc + in_channels, hc // 2, 3, stride=1, padding=1),
            Conv2dIBNormRelu(hc // 2, 1, 1, stride=1, padding=0, with_ibn=False, with_relu=False))

    def forward(self, img, lr8x, hr2x):
        lr2x = _up2(self.conv_lr4x(_up2(lr8x)))
        f2x = self.conv_f2x(torch.cat((lr2x, hr2x), dim=1))
        return torch.sigmoid(self.conv_f(torch.cat((_up2(f2x), img), dim=1)))


def modnet_input_size(h: int, w: int, ref_size: int = REF_SIZE) -> tuple[int, int]:
    """Official inference size for an h x w image: short side -> ref_size when the image is wholly
    smaller or wholly larger than ref_size, then each side floored to a multiple of 32 (>= 32)."""
    if max(h, w) < ref_size or min(h, w) > ref_size:
        if w >= h:
            h, w = ref_size, int(w / h * ref_size)
        else:
            h, w = int(h / w * ref_size), ref_size
    return max(32, h - h % 32), max(32, w - w % 32)


@register_model("modnet", MODNetConfig, task="trimap_free")
class MODNet(nn.Module):
    onnx_input_names = ("image",)
    onnx_output_names = ("matte",)
    onnx_dynamic_hw = True
    #: Non-tensor arguments appended to the ONNX example inputs at export (inference=True).
    onnx_extra_args = (True,)
    normalization = {"mean": [0.5, 0.5, 0.5], "std": [0.5, 0.5, 0.5]}

    def __init__(self, config: MODNetConfig | None = None):
        super().__init__()
        self.config = cfg = config or MODNetConfig()
        self.backbone = MobileNetV2Backbone(cfg.in_channels, cfg.backbone_alpha, cfg.backbone_expansion)
        enc = self.backbone.enc_channels
        self.lr_branch = LRBranch(self.backbone, cfg.semantic_head, tuple(cfg.easpp_dilations))
        self.hr_branch = HRBranch(cfg.hr_channels, enc, cfg.in_channels)
        self.f_branch = FusionBranch(cfg.hr_channels, enc, cfg.in_channels)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                # Official init (overrides the backbone's own, as in the official constructor).
                nn.init.kaiming_uniform_(m.weight, a=0, mode="fan_in", nonlinearity="relu")
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, (nn.BatchNorm2d, nn.InstanceNorm2d)) and m.weight is not None:
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def forward(self, img: torch.Tensor, inference: bool = False):
        """img (N,3,H,W) in [-1,1], H, W multiples of 32 ->
        (semantic (N,1,H/16,W/16) | None, detail (N,1,H,W) | None, matte (N,1,H,W)), all in (0,1)."""
        pred_semantic, lr8x, (enc2x, enc4x) = self.lr_branch(img, inference)
        pred_detail, hr2x = self.hr_branch(img, enc2x, enc4x, lr8x, inference)
        pred_matte = self.f_branch(img, lr8x, hr2x)
        return pred_semantic, pred_detail, pred_matte

    def onnx_example_inputs(self, h: int, w: int) -> tuple[torch.Tensor, ...]:
        h, w = max(32, h // 32 * 32), max(32, w // 32 * 32)
        p = next(self.parameters())
        return (torch.rand(1, 3, h, w, device=p.device, dtype=p.dtype) * 2 - 1,)

    def predict(self, image: torch.Tensor, guidance: torch.Tensor | None = None,
                alpha: torch.Tensor | None = None, forward: Callable | None = None) -> torch.Tensor:
        """image (N,3,H,W) sRGB in [0,1], any H, W -> alpha (N,1,H,W) in [0,1].

        Official inference: (x-0.5)/0.5, resize (area) to `modnet_input_size`, matte, area back."""
        fwd = forward or self.forward
        h, w = image.shape[-2:]
        x = (image - 0.5) / 0.5
        rh, rw = modnet_input_size(h, w, self.config.ref_size)
        if (rh, rw) != (h, w):
            x = F.interpolate(x, size=(rh, rw), mode="area")
        matte = fwd(x, True)[2]
        if (rh, rw) != (h, w):
            matte = F.interpolate(matte, size=(h, w), mode="area")
        return matte.clamp(0, 1)


# ---- official checkpoints -------------------------------------------------------------------

_ALIAS_PREFIX = "lr_branch.backbone."


def official_config(variant: str = "photographic") -> MODNetConfig:
    """Config of the released checkpoints (photographic / webcam share one architecture)."""
    if variant not in ("photographic", "webcam", "default", ""):
        raise ValueError(f"unknown MODNet variant {variant!r}; known: photographic, webcam")
    return MODNetConfig()


def from_official_state_dict(sd: dict, config: MODNetConfig | None = None) -> dict:
    """Official MODNet state_dict (751 keys, optional 'module.' prefix) -> ours (439 keys).

    Alias keys `lr_branch.backbone.*` are dropped after checking they equal `backbone.*`."""
    cfg = config or MODNetConfig()
    if cfg.semantic_head != "se":
        raise ValueError("official MODNet weights exist only for semantic_head='se'")
    sd = {(k[len("module."):] if k.startswith("module.") else k): v for k, v in sd.items()}
    out = {}
    for k, v in sd.items():
        if k.startswith(_ALIAS_PREFIX):
            canon = "backbone." + k[len(_ALIAS_PREFIX):]
            if canon not in sd:
                raise KeyError(f"alias {k} has no canonical key {canon}")
            if not torch.equal(sd[canon], v):
                raise ValueError(f"alias {k} differs from {canon}: not a MODNet checkpoint as released")
            continue
        out[k] = v
    return out


def to_official_state_dict(sd: dict, config: MODNetConfig | None = None) -> dict:
    """Ours -> official key layout (aliases re-added, in the official key order, no prefix)."""
    backbone = {k: v for k, v in sd.items() if k.startswith("backbone.")}
    # The official LRBranch registers `backbone` first, then se_block, conv_lr16x, ...
    lr = {_ALIAS_PREFIX + k[len("backbone."):]: v for k, v in backbone.items()}
    ordered = dict(backbone)
    ordered.update(lr)
    ordered.update({k: v for k, v in sd.items() if k.startswith("lr_branch.")})
    ordered.update({k: v for k, v in sd.items() if not k.startswith(("backbone.", "lr_branch."))})
    return ordered


# ---- the official ONNX export ---------------------------------------------------------------


def from_onnx(path: str, config: MODNetConfig | None = None) -> dict:
    """The official MODNet ONNX export (`onnx/export_onnx.py` of ZHKKKe/MODNet) -> our state_dict.

    The export folded each backbone BatchNorm into the convolution before it (W' = W g / s,
    b' = beta - mean g / s) and gave those tensors numeric names; the heads keep their official
    names, which are ours. So the graph's convolutions are matched to ours in execution order (the
    exporter writes nodes in the order forward runs them), with every shape checked; a folded pair
    becomes our conv with W' and its BatchNorm as the identity plus b' (mean 0, var 1 - eps,
    weight 1, bias b'), exact in eval mode. The SE block's MatMuls are our Linear layers, transposed;
    the heads' BatchNorms are copied by name. Raises ValueError on any mismatch.
    """
    import numpy as np
    import onnx
    from onnx import numpy_helper

    graph = onnx.load(str(path)).graph
    tensors = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
    for node in graph.node:
        if node.op_type == "Constant" and node.attribute and node.attribute[0].t.dims:
            tensors[node.output[0]] = numpy_helper.to_array(node.attribute[0].t)
    model = MODNet(config or official_config()).eval()
    called: list[tuple[str, nn.Module]] = []
    hooks = [m.register_forward_hook(lambda mod, i, o, name=name: called.append((name, mod)))
             for name, m in model.named_modules() if isinstance(m, (nn.Conv2d, nn.Linear, nn.BatchNorm2d))]
    with torch.no_grad():
        model(torch.zeros(1, 3, 64, 64), True)
    for h in hooks:
        h.remove()
    ours = {kind: [(n, m) for n, m in called if isinstance(m, kind)] for kind in (nn.Conv2d, nn.Linear, nn.BatchNorm2d)}
    theirs = {op: [n for n in graph.node if n.op_type == op] for op in ("Conv", "MatMul", "BatchNormalization")}
    if len(ours[nn.Conv2d]) != len(theirs["Conv"]) or len(ours[nn.Linear]) != len(theirs["MatMul"]):
        raise ValueError(f"{path}: {len(theirs['Conv'])} convolutions and {len(theirs['MatMul'])} MatMuls, "
                         f"MODNet has {len(ours[nn.Conv2d])} and {len(ours[nn.Linear])}: not the official export")
    sd = {k: v.clone() for k, v in model.state_dict().items()}

    def put(key: str, value: "np.ndarray") -> None:
        if tuple(sd[key].shape) != tuple(value.shape):
            raise ValueError(f"{path}: {key} has shape {tuple(value.shape)}, MODNet's is {tuple(sd[key].shape)}")
        sd[key] = torch.from_numpy(np.array(value, copy=True)).to(sd[key].dtype)

    names = {id(m): n for n, m in model.named_modules()}
    next_module = {id(a): b for (_, a), (_, b) in zip(called, called[1:])}
    folded = set()
    for (name, conv), node in zip(ours[nn.Conv2d], theirs["Conv"]):
        put(f"{name}.weight", tensors[node.input[1]])
        bias = tensors[node.input[2]] if len(node.input) > 2 else None
        if conv.bias is not None:
            if bias is None:
                raise ValueError(f"{path}: {node.name} has no bias, {name} needs one")
            put(f"{name}.bias", bias)
        elif bias is not None:  # a folded BatchNorm: ours is the next module forward called
            bn = next_module.get(id(conv))
            if not isinstance(bn, nn.BatchNorm2d):
                raise ValueError(f"{path}: {node.name} has a bias, but {name} is not followed by a BatchNorm")
            key = names[id(bn)]
            folded.add(key)
            put(f"{key}.bias", bias)
            sd[f"{key}.weight"] = torch.ones_like(sd[f"{key}.weight"])
            sd[f"{key}.running_mean"] = torch.zeros_like(sd[f"{key}.running_mean"])
            sd[f"{key}.running_var"] = torch.full_like(sd[f"{key}.running_var"], 1.0 - bn.eps)
    for (name, _), node in zip(ours[nn.Linear], theirs["MatMul"]):
        put(f"{name}.weight", tensors[node.input[1]].T)
    heads = [n for n, _ in ours[nn.BatchNorm2d] if n not in folded]
    if len(heads) != len(theirs["BatchNormalization"]):
        raise ValueError(f"{path}: {len(theirs['BatchNormalization'])} BatchNorms left in the graph, MODNet's heads have {len(heads)}")
    for name, node in zip(heads, theirs["BatchNormalization"]):
        for field, tensor in zip(("weight", "bias", "running_mean", "running_var"), node.input[1:5]):
            if not tensor[:1].isdigit() and tensor != f"{name}.{field}":
                raise ValueError(f"{path}: {node.name} holds {tensor}, expected {name}.{field}")
            put(f"{name}.{field}", tensors[tensor])
    return sd

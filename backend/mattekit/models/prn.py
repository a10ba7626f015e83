"""MG Matting's Progressive Refinement Network (Yu et al. 2021, "Mask Guided Matting via
Progressive Refinement Network"), faithful to the official code-base
(github.com/yucornetto/MGMatting `code-base/`, commit 2bac93f):

    Generator = res_shortcut_encoder_29 -> ASPP(512, 512) -> res_shortcut_decoder_22

Module paths equal the official ones minus the spectral-norm wrapper's `.module`, so the official
`<p>.module.weight_{bar,u,v}` triple becomes one plain `<p>.weight` (`from_official_state_dict`).

Shapes (official widths; H, W multiples of 32; `x` = cat(image, guidance), C_in = 4):

    encoder  stem conv1 s2 (32) -> conv2 (32) = x1 [OS2] -> conv3 s2 (64) -> layer1 (64) = x2 [OS4]
             -> layer2 (128) = x3 [OS8] -> layer3 (256) = x4 [OS16] -> layer_bottleneck (512) [OS32]
             shortcut[i]: conv-ReLU-BN-conv-ReLU-BN on (x, x1, x2, x3, x4) -> (32, 32, 64, 128, 256)
    aspp     512 -> 512 (mid 256, dilations 1/2/4/8 + global pooling)
    decoder  layer1 (256) + fea5 -> layer2 (128) + fea4 -> refine_OS8
             -> layer3 (64) + fea3 -> refine_OS4 -> layer4 (32) + fea2
             -> convT s2 (32) -> bn1 -> LeakyReLU(0.2) + fea1 -> refine_OS1

A light CPU variant swaps the encoder for MobileNetV2 (`encoder="mobilenetv2"`), and `width`
scales every channel count of our own blocks.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn as nn
import torch.nn.functional as F

from . import spectral
from .registry import register_model

#: ImageNet statistics used by the official MG Matting `infer.py`.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

ENCODERS = ("resnet_shortcut", "mobilenetv2")


@dataclass
class PRNConfig:
    #: "resnet_shortcut" (official res_shortcut_encoder_29) or "mobilenetv2" (light CPU option).
    encoder: str = "resnet_shortcut"
    #: Multiplier on every channel count of our blocks (1.0 = official). MobileNetV2 keeps its own.
    width: float = 1.0
    #: BasicBlocks per stage: encoder layer1, layer2, layer3, layer_bottleneck (official 3, 4, 4, 2).
    encoder_layers: tuple[int, int, int, int] = (3, 4, 4, 2)
    #: BasicBlocks per decoder stage layer1..layer4 (official 2, 3, 3, 2).
    decoder_layers: tuple[int, int, int, int] = (2, 3, 3, 2)
    #: Wrap the official SN convs with torch spectral-norm parametrizations (training fidelity).
    spectral_norm: bool = False
    #: Masks are binarised at `guidance >= threshold` (official: 128/255 on uint8, i.e. 0.5 here;
    #: a trimap's 0.5 counts as foreground). None passes soft guidance through unchanged.
    guidance_threshold: float | None = 0.5
    #: Self-guidance dilation at test time: elliptical kernel sizes for OS8->OS4 and OS4->OS1
    #: (official self_refine_width1 // 2 = 15 and self_refine_width2 // 2 = 7).
    refine_kernel_os4: int = 15
    refine_kernel_os1: int = 7
    #: Progressive refinement at predict time (False: return alpha_os1 unchanged).
    progressive_refine: bool = True
    #: Input channels besides RGB: 1 guidance channel for PRN.
    extra_in_channels: int = 1


def official_config(variant: str = "MGMatting-DIM-100k") -> PRNConfig:
    """Config of the released checkpoints (MGMatting-DIM-100k, MGMatting-RWP-100k: same network).

    The README's DIM recipe thresholds uint8 guidance at >= 170, RWP at >= 128; halfway below
    (169.5/255, 127.5/255 = 0.5) gives the same result on v/255 floats without rounding doubts.
    """
    variants = {"MGMatting-DIM-100k": 169.5 / 255, "MGMatting-RWP-100k": 127.5 / 255}
    if variant not in variants:
        raise ValueError(f"unknown MG Matting variant {variant!r}; known: {sorted(variants)}")
    return PRNConfig(guidance_threshold=variants[variant])


def light_config() -> PRNConfig:
    """A CPU-friendly variant (no official weights): MobileNetV2 encoder, half-width decoder."""
    return PRNConfig(encoder="mobilenetv2", width=0.5, decoder_layers=(1, 2, 2, 1))


def _ch(c: int, width: float) -> int:
    """Scaled channel count, at least 8."""
    return max(8, int(round(c * width)))


# --------------------------------------------------------------------------- building blocks


def conv3x3(cin: int, cout: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, 3, stride, 1, bias=False)


def conv1x1(cin: int, cout: int) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, 1, 1, 0, bias=False)


class BasicBlock(nn.Module):
    """Encoder BasicBlock (ResNet v1, ReLU); `downsample` = AvgPool2d(2) -> conv1x1 -> BN."""

    def __init__(self, cin: int, cout: int, stride: int = 1, downsample: nn.Module | None = None):
        super().__init__()
        self.conv1 = conv3x3(cin, cout, stride)
        self.bn1 = nn.BatchNorm2d(cout)
        self.activation = nn.ReLU(inplace=True)
        self.conv2 = conv3x3(cout, cout)
        self.bn2 = nn.BatchNorm2d(cout)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.activation(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        identity = x if self.downsample is None else self.downsample(x)
        return self.activation(out + identity)


class DecoderBlock(nn.Module):
    """Decoder BasicBlock (LeakyReLU 0.2). With `stride=2`: conv1 is ConvTranspose2d(k4, s2, p1)
    and `upsample` = nearest x2 -> conv1x1 -> BN on the identity path."""

    def __init__(self, cin: int, cout: int, stride: int = 1, upsample: nn.Module | None = None):
        super().__init__()
        if stride > 1:
            self.conv1: nn.Module = nn.ConvTranspose2d(cin, cin, 4, 2, 1, bias=False)
        else:
            self.conv1 = conv3x3(cin, cin)
        self.bn1 = nn.BatchNorm2d(cin)
        self.activation = nn.LeakyReLU(0.2, inplace=True)
        self.conv2 = conv3x3(cin, cout)
        self.bn2 = nn.BatchNorm2d(cout)
        self.upsample = upsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.activation(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        identity = x if self.upsample is None else self.upsample(x)
        return self.activation(out + identity)


def make_shortcut(cin: int, cout: int) -> nn.Sequential:
    """conv-ReLU-BN-conv-ReLU-BN (the official order: ReLU before BN)."""
    return nn.Sequential(conv3x3(cin, cout), nn.ReLU(inplace=True), nn.BatchNorm2d(cout),
                         conv3x3(cout, cout), nn.ReLU(inplace=True), nn.BatchNorm2d(cout))


def _encoder_stage(cin: int, cout: int, blocks: int, stride: int) -> nn.Sequential:
    downsample = None
    if stride != 1:
        downsample = nn.Sequential(nn.AvgPool2d(2, stride), conv1x1(cin, cout), nn.BatchNorm2d(cout))
    elif cin != cout:
        downsample = nn.Sequential(conv1x1(cin, cout), nn.BatchNorm2d(cout))
    layers = [BasicBlock(cin, cout, stride, downsample)]
    layers += [BasicBlock(cout, cout) for _ in range(1, blocks)]
    return nn.Sequential(*layers)


def _decoder_stage(cin: int, cout: int, blocks: int) -> nn.Sequential:
    upsample = nn.Sequential(nn.UpsamplingNearest2d(scale_factor=2), conv1x1(cin, cout), nn.BatchNorm2d(cout))
    layers = [DecoderBlock(cin, cout, 2, upsample)]
    layers += [DecoderBlock(cout, cout) for _ in range(1, blocks)]
    return nn.Sequential(*layers)


class ResShortCutEncoder(nn.Module):
    """Official `ResShortCut_D(BasicBlock, layers)` (late_downsample=False).

    forward: x (N, C_in, H, W) -> (bottleneck (N, 512w, H/32, W/32),
    [fea1 OS1 (32w), fea2 OS2 (32w), fea3 OS4 (64w), fea4 OS8 (128w), fea5 OS16 (256w)]).
    """

    def __init__(self, in_channels: int, width: float = 1.0, layers: tuple[int, ...] = (3, 4, 4, 2)):
        super().__init__()
        c = lambda n: _ch(n, width)  # noqa: E731
        mid, inplanes = c(32), c(64)
        self.conv1 = conv3x3(in_channels, c(32), 2)
        self.conv2 = conv3x3(c(32), mid, 1)
        self.conv3 = conv3x3(mid, inplanes, 2)
        self.bn1 = nn.BatchNorm2d(c(32))
        self.bn2 = nn.BatchNorm2d(mid)
        self.bn3 = nn.BatchNorm2d(inplanes)
        self.activation = nn.ReLU(inplace=True)
        self.layer1 = _encoder_stage(inplanes, c(64), layers[0], 1)
        self.layer2 = _encoder_stage(c(64), c(128), layers[1], 2)
        self.layer3 = _encoder_stage(c(128), c(256), layers[2], 2)
        self.layer_bottleneck = _encoder_stage(c(256), c(512), layers[3], 2)
        cins = [in_channels, mid, c(64), c(128), c(256)]
        couts = [c(32), mid, c(64), c(128), c(256)]
        self.shortcut = nn.ModuleList(make_shortcut(i, o) for i, o in zip(cins, couts))
        self.out_channels = c(512)
        self.shortcut_channels = couts

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        out = self.activation(self.bn1(self.conv1(x)))
        x1 = self.activation(self.bn2(self.conv2(out)))
        out = self.activation(self.bn3(self.conv3(x1)))
        x2 = self.layer1(out)
        x3 = self.layer2(x2)
        x4 = self.layer3(x3)
        out = self.layer_bottleneck(x4)
        feats = [sc(f) for sc, f in zip(self.shortcut, (x, x1, x2, x3, x4))]
        return out, feats


class MobileNetV2Encoder(nn.Module):
    """Light encoder: MobileNetV2 features 0..17 (no final 1x1 to 1280), same outputs as
    `ResShortCutEncoder` (bottleneck 320 channels at OS32; shortcuts from x, OS2, OS4, OS8, OS16)."""

    #: Last `features` index of each pyramid level OS2, OS4, OS8, OS16, OS32.
    STAGE_ENDS = (1, 3, 6, 13, 17)

    def __init__(self, in_channels: int, width: float = 1.0):
        super().__init__()
        from .mobilenetv2 import MobileNetV2

        net = MobileNetV2(in_channels=in_channels, num_classes=None)
        self.features = net.features[: self.STAGE_ENDS[-1] + 1]
        level_ch = [net.block_channels[i] for i in self.STAGE_ENDS]
        c = lambda n: _ch(n, width)  # noqa: E731
        cins = [in_channels] + level_ch[:4]
        couts = [c(32), c(32), c(64), c(128), c(256)]
        self.shortcut = nn.ModuleList(make_shortcut(i, o) for i, o in zip(cins, couts))
        self.out_channels = level_ch[4]
        self.shortcut_channels = couts

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        levels, out, start = [], x, 0
        for end in self.STAGE_ENDS:
            for i in range(start, end + 1):
                out = self.features[i](out)
            levels.append(out)
            start = end + 1
        feats = [sc(f) for sc, f in zip(self.shortcut, [x] + levels[:4])]
        return levels[4], feats


class ASPP(nn.Module):
    """Official `ops.ASPP`: 1x1 + three dilated 3x3 (2, 4, 8) + global pooling (nearest back up),
    each conv-BN-ReLU, concat -> 1x1 -> BN -> ReLU."""

    def __init__(self, cin: int, cout: int, mid: int = 256):
        super().__init__()
        self.global_pooling = nn.AdaptiveAvgPool2d(1)
        self.relu = nn.ReLU(inplace=True)
        self.aspp1 = nn.Conv2d(cin, mid, 1, bias=False)
        self.aspp2 = nn.Conv2d(cin, mid, 3, padding=2, dilation=2, bias=False)
        self.aspp3 = nn.Conv2d(cin, mid, 3, padding=4, dilation=4, bias=False)
        self.aspp4 = nn.Conv2d(cin, mid, 3, padding=8, dilation=8, bias=False)
        self.aspp5 = nn.Conv2d(cin, mid, 1, bias=False)
        self.aspp1_bn = nn.BatchNorm2d(mid)
        self.aspp2_bn = nn.BatchNorm2d(mid)
        self.aspp3_bn = nn.BatchNorm2d(mid)
        self.aspp4_bn = nn.BatchNorm2d(mid)
        self.aspp5_bn = nn.BatchNorm2d(mid)
        self.conv2 = nn.Conv2d(mid * 5, cout, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x1 = self.relu(self.aspp1_bn(self.aspp1(x)))
        x2 = self.relu(self.aspp2_bn(self.aspp2(x)))
        x3 = self.relu(self.aspp3_bn(self.aspp3(x)))
        x4 = self.relu(self.aspp4_bn(self.aspp4(x)))
        x5 = self.relu(self.aspp5_bn(self.aspp5(self.global_pooling(x))))
        x5 = F.interpolate(x5, size=x.shape[2:], mode="nearest")
        return self.relu(self.bn2(self.conv2(torch.cat((x1, x2, x3, x4, x5), 1))))


def _head(cin: int, mid: int, cout: int, act: nn.Module) -> nn.Sequential:
    """refine_OS*: conv3x3 -> BN -> (shared) LeakyReLU -> conv3x3 with bias."""
    return nn.Sequential(nn.Conv2d(cin, mid, 3, 1, 1, bias=False), nn.BatchNorm2d(mid), act,
                         nn.Conv2d(mid, cout, 3, 1, 1))


class ResShortCutDecoder(nn.Module):
    """Official `ResShortCut_D_Dec(BasicBlock, layers)`; returns head logits at their own scale:
    {"os1": (N, k, H, W), "os4": (N, k, H/4, W/4), "os8": (N, k, H/8, W/8)} for `heads`."""

    def __init__(self, width: float = 1.0, layers: tuple[int, ...] = (2, 3, 3, 2),
                 heads: tuple[str, ...] = ("os1", "os4", "os8"), out_channels: int = 1):
        super().__init__()
        c = lambda n: _ch(n, width)  # noqa: E731
        mid = c(32)
        self.conv1 = nn.ConvTranspose2d(mid, c(32), 4, 2, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(c(32))
        self.leaky_relu = nn.LeakyReLU(0.2, inplace=True)
        self.layer1 = _decoder_stage(c(512), c(256), layers[0])
        self.layer2 = _decoder_stage(c(256), c(128), layers[1])
        self.layer3 = _decoder_stage(c(128), c(64), layers[2])
        self.layer4 = _decoder_stage(c(64), mid, layers[3])
        self.heads = tuple(heads)
        if "os1" in heads:
            self.refine_OS1 = _head(c(32), c(32), out_channels, self.leaky_relu)
        if "os4" in heads:
            self.refine_OS4 = _head(c(64), c(32), out_channels, self.leaky_relu)
        if "os8" in heads:
            self.refine_OS8 = _head(c(128), c(32), out_channels, self.leaky_relu)

    def forward(self, x: torch.Tensor, feats: list[torch.Tensor]) -> dict[str, torch.Tensor]:
        fea1, fea2, fea3, fea4, fea5 = feats
        ret: dict[str, torch.Tensor] = {}
        x = self.layer1(x) + fea5
        x = self.layer2(x) + fea4
        if "os8" in self.heads:
            ret["os8"] = self.refine_OS8(x)
        x = self.layer3(x) + fea3
        if "os4" in self.heads:
            ret["os4"] = self.refine_OS4(x)
        x = self.layer4(x) + fea2
        x = self.leaky_relu(self.bn1(self.conv1(x))) + fea1
        if "os1" in self.heads:
            ret["os1"] = self.refine_OS1(x)
        return ret


class EncoderDecoder(nn.Module):
    """encoder -> aspp -> decoder, shared by PRN and the foreground net."""

    def __init__(self, encoder: str, in_channels: int, width: float, encoder_layers: tuple[int, ...],
                 decoder_layers: tuple[int, ...], heads: tuple[str, ...], out_channels: int):
        super().__init__()
        if encoder == "resnet_shortcut":
            self.encoder: nn.Module = ResShortCutEncoder(in_channels, width, encoder_layers)
        elif encoder == "mobilenetv2":
            self.encoder = MobileNetV2Encoder(in_channels, width)
        else:
            raise ValueError(f"encoder must be one of {ENCODERS}, got {encoder!r}")
        self.aspp = ASPP(self.encoder.out_channels, _ch(512, width), mid=_ch(256, width))
        self.decoder = ResShortCutDecoder(width, decoder_layers, heads, out_channels)

    def logits(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        embedding, feats = self.encoder(x)
        return self.decoder(self.aspp(embedding), feats)


def official_sn_paths(model: nn.Module) -> list[str]:
    """Module paths the official code wraps in SpectralNorm: every conv / convT in the
    resnet_shortcut encoder and in the decoder except the refine heads (never the ASPP)."""
    paths = []
    for name, mod in model.named_modules():
        if not isinstance(mod, (nn.Conv2d, nn.ConvTranspose2d)):
            continue
        if name.startswith("encoder.features."):  # MobileNetV2 has no SN officially
            continue
        if name.startswith("encoder.") or (name.startswith("decoder.") and "refine_OS" not in name):
            paths.append(name)
    return paths


# --------------------------------------------------------------------------- pre/post processing


def normalize_image(image: torch.Tensor) -> torch.Tensor:
    """(N, 3, H, W) sRGB in [0, 1] -> ImageNet-normalised, as the official infer.py."""
    mean = image.new_tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    std = image.new_tensor(IMAGENET_STD).view(1, 3, 1, 1)
    return (image - mean) / std


def official_padding(h: int, w: int) -> tuple[int, int, int, int]:
    """(left, right, top, bottom) of the official infer.py: 32 on every side plus enough on the
    bottom / right to reach a multiple of 32."""
    ph = 32 * math.ceil(h / 32) - h
    pw = 32 * math.ceil(w / 32) - w
    return 32, 32 + pw, 32, 32 + ph


def reflect_pad(x: torch.Tensor, pad: tuple[int, int, int, int]) -> torch.Tensor:
    """`np.pad(mode="reflect")` on the last two dims, also for pads larger than the image
    (numpy reflects repeatedly; torch's reflect needs pad < size, so pad in steps)."""
    left, right, top, bottom = pad
    while left or right or top or bottom:
        h, w = x.shape[-2:]
        step = (min(left, w - 1), min(right, w - 1), min(top, h - 1), min(bottom, h - 1))
        if max(step) == 0:  # a 1-pixel side: reflection degenerates to repetition
            return F.pad(x, (left, right, top, bottom), mode="replicate")
        x = F.pad(x, step, mode="reflect")
        left, right, top, bottom = (a - b for a, b in zip((left, right, top, bottom), step))
    return x


def ellipse_kernel(size: int) -> torch.Tensor:
    """`cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (size, size))` as a float (size, size) tensor."""
    k = torch.zeros(size, size)
    r = c = size // 2
    for i in range(size):
        dy = i - r
        if abs(dy) <= r:
            dx = int(round(c * math.sqrt((r * r - dy * dy) / (r * r)))) if r else 0
            k[i, max(c - dx, 0): min(c + dx + 1, size)] = 1
    return k


def dilate(mask: torch.Tensor, size: int) -> torch.Tensor:
    """Binary dilation of (N, 1, H, W) {0, 1} by an elliptical kernel (cv2.dilate semantics:
    outside the image counts as 0). Returns bool (N, 1, H, W). Runs on the input's device."""
    if size <= 1:
        return mask > 0.5
    k = ellipse_kernel(size).to(device=mask.device, dtype=mask.dtype)[None, None]
    hit = F.conv2d(mask, k, padding=size // 2)
    return hit > 0.5


def uncertain_region(alpha: torch.Tensor, size: int) -> torch.Tensor:
    """Official `get_unknown_tensor_from_pred` at test time: pixels with 1/255 <= alpha <= 1 - 1/255,
    dilated by an ellipse of `size`. (N, 1, H, W) float -> bool."""
    u = ~((alpha < 1.0 / 255.0) | (alpha > 1.0 - 1.0 / 255.0))
    return dilate(u.to(alpha.dtype), size)


def progressive_refine(os8: torch.Tensor, os4: torch.Tensor, os1: torch.Tensor,
                       k_os4: int = 15, k_os1: int = 7) -> torch.Tensor:
    """Progressive Refinement Module at inference: start from OS8, replace the dilated uncertain
    region by OS4, then the (recomputed) uncertain region by OS1. All (N, 1, H, W) in [0, 1]."""
    a = torch.where(uncertain_region(os8, k_os4), os4, os8)
    return torch.where(uncertain_region(a, k_os1), os1, a)


def prepare_guidance(guidance: torch.Tensor, threshold: float | None) -> torch.Tensor:
    """(N, 1, H, W) or (N, H, W) mask / soft mask / trimap in [0, 1] -> float (N, 1, H, W)."""
    if guidance.dim() == 3:
        guidance = guidance[:, None]
    guidance = guidance.float()
    if threshold is None:
        return guidance.clamp(0.0, 1.0)
    return (guidance >= threshold).float()


ForwardFn = Callable[[torch.Tensor, torch.Tensor], dict]


def _to_alpha(logit: torch.Tensor, scale: int) -> torch.Tensor:
    if scale != 1:
        logit = F.interpolate(logit, scale_factor=float(scale), mode="bilinear", align_corners=False)
    return (torch.tanh(logit) + 1.0) / 2.0


# --------------------------------------------------------------------------- the model


@register_model("prn", PRNConfig, task="guided")
class PRN(nn.Module):
    """MG Matting's PRN. `forward(image_normalised, guidance)` is the official Generator;
    `predict(image, guidance)` adds the official infer.py pre/post processing."""

    onnx_input_names = ("image", "guidance")
    onnx_output_names = ("alpha_os1", "alpha_os4", "alpha_os8")
    onnx_dynamic_hw = True
    #: H, W given to forward must be multiples of this (predict pads).
    size_multiple = 32

    def __init__(self, config: PRNConfig | None = None):
        super().__init__()
        self.config = config = config or PRNConfig()
        net = EncoderDecoder(config.encoder, 3 + config.extra_in_channels, config.width,
                             config.encoder_layers, config.decoder_layers, ("os1", "os4", "os8"), 1)
        # Official paths: encoder.*, aspp.*, decoder.* directly on the generator.
        self.encoder, self.aspp, self.decoder = net.encoder, net.aspp, net.decoder
        _init_weights(self)
        self.sn_paths = official_sn_paths(self)
        if config.spectral_norm:
            spectral.apply_spectral_norm(self, self.sn_paths)
        self._register_load_state_dict_pre_hook(spectral.load_state_dict_pre_hook, with_module=True)

    def forward(self, image: torch.Tensor, guidance: torch.Tensor) -> dict[str, torch.Tensor]:
        """image (N, 3, H, W) ImageNet-normalised, guidance (N, 1, H, W); H, W multiples of 32.

        Returns {"alpha_os1", "alpha_os4", "alpha_os8"}: each (N, 1, H, W) = (tanh(logit) + 1) / 2,
        the OS4 / OS8 logits upsampled bilinearly (align_corners=False) before the tanh.
        """
        embedding, feats = self.encoder(torch.cat((image, guidance), dim=1))
        logits = self.decoder(self.aspp(embedding), feats)
        return {"alpha_os1": _to_alpha(logits["os1"], 1), "alpha_os4": _to_alpha(logits["os4"], 4),
                "alpha_os8": _to_alpha(logits["os8"], 8)}

    @torch.no_grad()
    def predict(self, image: torch.Tensor, guidance: torch.Tensor | None = None, alpha: torch.Tensor | None = None,
                forward: ForwardFn | None = None) -> torch.Tensor:
        """image (N, 3, H, W) sRGB in [0, 1], any H, W; guidance (N, 1, H, W) binary / soft mask or
        trimap {0, 0.5, 1}. Returns alpha (N, 1, H, W) in [0, 1].

        As the official infer.py: normalise, reflect-pad (32 + up to a multiple of 32), run, refine
        OS8 -> OS4 -> OS1 on the padded maps, crop. `alpha` is unused (PRN needs no prior matte).
        """
        if guidance is None:
            raise ValueError("PRN needs a guidance mask or trimap")
        forward = forward or self.forward
        cfg = self.config
        n, _, h, w = image.shape
        guide = prepare_guidance(guidance, cfg.guidance_threshold).to(image.device)
        pad = official_padding(h, w)
        x = reflect_pad(normalize_image(image.float()), pad)
        g = reflect_pad(guide, pad)
        out = forward(x, g)
        a = out["alpha_os1"]
        if cfg.progressive_refine:
            a = progressive_refine(out["alpha_os8"], out["alpha_os4"], a, cfg.refine_kernel_os4, cfg.refine_kernel_os1)
        return a[:, :, pad[2]: pad[2] + h, pad[0]: pad[0] + w].clamp(0.0, 1.0)

    def onnx_example_inputs(self, h: int = 512, w: int = 512) -> tuple[torch.Tensor, torch.Tensor]:
        """(image (1, 3, h, w), guidance (1, 1, h, w)): what `forward` takes; h, w multiples of 32."""
        g = torch.Generator().manual_seed(0)
        image = normalize_image(torch.rand(1, 3, h, w, generator=g))
        yy, xx = torch.meshgrid(torch.linspace(-1, 1, h), torch.linspace(-1, 1, w), indexing="ij")
        guidance = ((yy**2 + xx**2) < 0.5).float()[None, None]
        return image, guidance


def _init_weights(model: nn.Module) -> None:
    """The official initialisation: xavier-uniform convs, BN gamma 1 beta 0, and the last BN of
    every residual block zero-initialised ("zero_init_residual"). MobileNetV2 keeps its own."""
    feats = getattr(model.encoder, "features", None)
    skip = {id(m) for m in feats.modules()} if feats is not None else set()
    for m in model.modules():
        if id(m) in skip:
            continue
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
            nn.init.xavier_uniform_(m.weight)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
    for m in model.modules():
        if isinstance(m, (BasicBlock, DecoderBlock)):
            nn.init.zeros_(m.bn2.weight)


# --------------------------------------------------------------------------- official checkpoints


def from_official_state_dict(sd: dict[str, torch.Tensor], config: PRNConfig | None = None) -> dict[str, torch.Tensor]:
    """Official MG Matting state_dict (or checkpoint dict with `state_dict`, with or without the
    DataParallel `module.` prefix) -> ours: each SN triple folded to `<p>.weight`, floats as float32."""
    config = config or PRNConfig()
    if config.encoder != "resnet_shortcut":
        raise ValueError("official MG Matting weights need encoder='resnet_shortcut'")
    if "state_dict" in sd and isinstance(sd["state_dict"], dict):
        sd = sd["state_dict"]
    keys = list(sd)
    if keys and keys[0].startswith("module"):  # as utils.remove_prefix_state_dict
        sd = {k[len("module") + 1:]: v for k, v in sd.items()}
    return spectral.fold_official_state_dict(sd)


def to_official_state_dict(sd: dict[str, torch.Tensor], config: PRNConfig | None = None) -> dict[str, torch.Tensor]:
    """Ours (plain or SN-parametrized) -> official key layout (no `module.` prefix).

    Every SN conv gets `weight_bar = W`, `weight_u` = unit top left singular vector of
    W.view(W.shape[0], -1), `weight_v` = top right singular vector / sigma(W): the official eval
    formula then reproduces W exactly (sigma = u . W v = 1), and official training sees W's true
    spectral norm.
    """
    config = config or PRNConfig()
    if config.encoder != "resnet_shortcut":
        raise ValueError("only encoder='resnet_shortcut' has an official layout")
    with torch.device("meta"):  # only the key order and SN paths are needed
        model = PRN(PRNConfig(**{**config.__dict__, "spectral_norm": False}))
    plain = spectral.plain_state_dict_from(sd)
    own = model.state_dict()
    if set(plain) != set(own):
        raise KeyError(f"state_dict does not match config: {sorted(set(plain) ^ set(own))[:5]}")
    ordered = {k: plain[k] for k in own}
    return spectral.unfold_official_state_dict(ordered, model.sn_paths)


"""MobileNetV2 (Sandler et al. 2018) as MODNet's public code builds it.

Module paths match ZHKKKe/MODNet `src/models/backbones/{mobilenetv2,wrapper}.py`
(`model.features.<i>.conv.<j>`), so MODNet's released checkpoints load without renaming.
Also usable as a light CPU encoder by other models (`MobileNetV2Backbone(in_channels=4)`).

Feature pyramid returned by `MobileNetV2Backbone.forward` for an input (N, C, H, W), H and W
multiples of 32 (other sizes work, strided convs round up):

    [enc2x (N,16,H/2,W/2), enc4x (N,24,H/4,W/4), enc8x (N,32,H/8,W/8),
     enc16x (N,96,H/16,W/16), enc32x (N,1280,H/32,W/32)]     (channels for alpha=1.0)
"""

from __future__ import annotations

import torch
import torch.nn as nn

#: Inverted-residual settings (t = expansion, c = channels, n = repeats, s = stride of the first).
_SETTINGS = ((1, 16, 1, 1), ("t", 24, 2, 2), ("t", 32, 3, 2), ("t", 64, 4, 2),
             ("t", 96, 3, 1), ("t", 160, 3, 2), ("t", 320, 1, 1))

#: Index into `features` after which each pyramid level is taken (x2, x4, x8, x16, x32).
STAGE_ENDS = (1, 3, 6, 13, 18)


def make_divisible(v: float, divisor: int = 8, min_value: int | None = None) -> int:
    """Round `v` to a multiple of `divisor`, never going more than 10 % below `v`."""
    min_value = divisor if min_value is None else min_value
    new_v = max(min_value, int(v + divisor / 2) // divisor * divisor)
    if new_v < 0.9 * v:
        new_v += divisor
    return new_v


def conv_bn(inp: int, oup: int, stride: int) -> nn.Sequential:
    """3x3 conv (no bias) + BN + ReLU6: the stem."""
    return nn.Sequential(nn.Conv2d(inp, oup, 3, stride, 1, bias=False), nn.BatchNorm2d(oup),
                         nn.ReLU6(inplace=True))


def conv_1x1_bn(inp: int, oup: int) -> nn.Sequential:
    """1x1 conv (no bias) + BN + ReLU6: the last feature layer."""
    return nn.Sequential(nn.Conv2d(inp, oup, 1, 1, 0, bias=False), nn.BatchNorm2d(oup),
                         nn.ReLU6(inplace=True))


class InvertedResidual(nn.Module):
    """Expand (1x1) -> depthwise 3x3 -> project (1x1, linear), residual when shapes allow."""

    def __init__(self, inp: int, oup: int, stride: int, expansion: float, dilation: int = 1):
        super().__init__()
        self.stride = stride
        hidden = round(inp * expansion)
        self.use_res_connect = stride == 1 and inp == oup
        dw = [nn.Conv2d(hidden, hidden, 3, stride, dilation, dilation=dilation, groups=hidden, bias=False),
              nn.BatchNorm2d(hidden), nn.ReLU6(inplace=True)]
        project = [nn.Conv2d(hidden, oup, 1, 1, 0, bias=False), nn.BatchNorm2d(oup)]
        if expansion == 1:
            layers = dw + project
        else:
            layers = [nn.Conv2d(inp, hidden, 1, 1, 0, bias=False), nn.BatchNorm2d(hidden),
                      nn.ReLU6(inplace=True)] + dw + project
        self.conv = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv(x) if self.use_res_connect else self.conv(x)


class MobileNetV2(nn.Module):
    """MobileNetV2 `features` (19 blocks) and an optional classifier (`num_classes=None`: none)."""

    def __init__(self, in_channels: int = 3, alpha: float = 1.0, expansion: float = 6,
                 num_classes: int | None = None):
        super().__init__()
        self.in_channels = in_channels
        self.num_classes = num_classes
        input_channel = make_divisible(32 * alpha, 8)
        self.last_channel = make_divisible(1280 * alpha, 8) if alpha > 1.0 else 1280
        features: list[nn.Module] = [conv_bn(in_channels, input_channel, 2)]
        self.block_channels = [input_channel]
        for t, c, n, s in _SETTINGS:
            t = expansion if t == "t" else t
            out = make_divisible(int(c * alpha), 8)
            for i in range(n):
                features.append(InvertedResidual(input_channel, out, s if i == 0 else 1, expansion=t))
                input_channel = out
                self.block_channels.append(out)
        features.append(conv_1x1_bn(input_channel, self.last_channel))
        self.block_channels.append(self.last_channel)
        self.features = nn.Sequential(*features)
        if num_classes is not None:
            self.classifier = nn.Sequential(nn.Dropout(0.2), nn.Linear(self.last_channel, num_classes))
        self._init_weights()

    def _init_weights(self) -> None:
        # He-normal convs, unit BN, small linear: the official initialisation.
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, 0, 0.01)
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(N, C, H, W) -> logits (N, num_classes), or features (N, 1280, H/32, W/32) without classifier."""
        x = self.features(x)
        if self.num_classes is None:
            return x
        return self.classifier(x.mean((2, 3)))


class MobileNetV2Backbone(nn.Module):
    """MODNet's wrapper: `self.model` is the MobileNetV2, forward returns the 5-level pyramid."""

    def __init__(self, in_channels: int = 3, alpha: float = 1.0, expansion: float = 6):
        super().__init__()
        self.in_channels = in_channels
        self.model = MobileNetV2(in_channels, alpha=alpha, expansion=expansion, num_classes=None)
        self.enc_channels = [self.model.block_channels[i] for i in STAGE_ENDS]

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        """(N, C, H, W) -> [enc2x, enc4x, enc8x, enc16x, enc32x] (strides 2..32)."""
        feats = []
        start = 0
        for end in STAGE_ENDS:
            for i in range(start, end + 1):
                x = self.model.features[i](x)
            feats.append(x)
            start = end + 1
        return feats

"""ResNet-18/34 with torchvision's module names, so torchvision checkpoints (and models that
embed `torchvision.models.resnet34`, like GFM) load without renaming.

Module tree (torchvision): conv1, bn1, relu, maxpool, layer1..layer4 of `BasicBlock`
(conv1, bn1, relu, conv2, bn2, downsample=Sequential(conv1x1, bn)), avgpool, fc.

`ResNet.features(x)` returns the multi-scale pyramid used by matting decoders. For an
input (N, C, H, W) with H, W multiples of 32:

    stem=True : [e0 (N,64,H/2,W/2) after conv1/bn1/relu,  e1 (N,64,H/4)  after maxpool+layer1,
                 e2 (N,128,H/8), e3 (N,256,H/16), e4 (N,512,H/32)]
    stem=False: [layer1 (N,64,H), layer2 (N,128,H/2), layer3 (N,256,H/4), layer4 (N,512,H/8)]
                (input must already have 64 channels; GFM-r34_2b uses this)
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn as nn


def conv3x3(in_planes: int, out_planes: int, stride: int = 1) -> nn.Conv2d:
    """3x3 convolution, padding 1, no bias (a BN follows)."""
    return nn.Conv2d(in_planes, out_planes, kernel_size=3, stride=stride, padding=1, bias=False)


def conv1x1(in_planes: int, out_planes: int, stride: int = 1) -> nn.Conv2d:
    """1x1 convolution, no bias (the downsample projection)."""
    return nn.Conv2d(in_planes, out_planes, kernel_size=1, stride=stride, bias=False)


class BasicBlock(nn.Module):
    """Two 3x3 conv-BN layers with an identity (or projected) shortcut; torchvision names."""

    expansion = 1

    def __init__(self, inplanes: int, planes: int, stride: int = 1, downsample: nn.Module | None = None):
        super().__init__()
        self.conv1 = conv3x3(inplanes, planes, stride)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = conv3x3(planes, planes)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = downsample
        self.stride = stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)


class ResNet(nn.Module):
    """torchvision-compatible ResNet of BasicBlocks.

    Args:
        layers: blocks per stage, (3, 4, 6, 3) for ResNet-34.
        num_classes: size of `fc`; None builds neither avgpool nor fc (feature extractor).
        in_channels: input channels of conv1.
        stem: build conv1/bn1/relu/maxpool; False starts at layer1 (input has 64 channels).
    """

    def __init__(self, layers: Sequence[int] = (3, 4, 6, 3), num_classes: int | None = 1000,
                 in_channels: int = 3, stem: bool = True):
        super().__init__()
        self.inplanes = 64
        self.has_stem = stem
        if stem:
            self.conv1 = nn.Conv2d(in_channels, 64, kernel_size=7, stride=2, padding=3, bias=False)
            self.bn1 = nn.BatchNorm2d(64)
            self.relu = nn.ReLU(inplace=True)
            self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        self.layer1 = self._make_layer(64, layers[0])
        self.layer2 = self._make_layer(128, layers[1], stride=2)
        self.layer3 = self._make_layer(256, layers[2], stride=2)
        self.layer4 = self._make_layer(512, layers[3], stride=2)
        self.num_classes = num_classes
        if num_classes is not None:
            self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
            self.fc = nn.Linear(512 * BasicBlock.expansion, num_classes)
        self._init_weights()

    def _make_layer(self, planes: int, blocks: int, stride: int = 1) -> nn.Sequential:
        downsample = None
        if stride != 1 or self.inplanes != planes * BasicBlock.expansion:
            downsample = nn.Sequential(conv1x1(self.inplanes, planes * BasicBlock.expansion, stride),
                                       nn.BatchNorm2d(planes * BasicBlock.expansion))
        layers = [BasicBlock(self.inplanes, planes, stride, downsample)]
        self.inplanes = planes * BasicBlock.expansion
        layers += [BasicBlock(self.inplanes, planes) for _ in range(1, blocks)]
        return nn.Sequential(*layers)

    def _init_weights(self) -> None:
        # torchvision's initialisation: He (fan_out) convs, unit-gamma BN.
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    @property
    def feature_channels(self) -> list[int]:
        """Channels of each tensor `features` returns."""
        return ([64] if self.has_stem else []) + [64, 128, 256, 512]

    def features(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Multi-scale features (see the module docstring for shapes)."""
        feats = []
        if self.has_stem:
            x = self.relu(self.bn1(self.conv1(x)))
            feats.append(x)
            x = self.maxpool(x)
        for layer in (self.layer1, self.layer2, self.layer3, self.layer4):
            x = layer(x)
            feats.append(x)
        return feats

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(N, C, H, W) -> class logits (N, num_classes); needs the stem and fc."""
        if self.num_classes is None or not self.has_stem:
            raise RuntimeError("this ResNet is a feature extractor; call features()")
        x = self.features(x)[-1]
        return self.fc(torch.flatten(self.avgpool(x), 1))


def resnet34(**kwargs) -> ResNet:
    """ResNet-34: BasicBlock stages (3, 4, 6, 3)."""
    return ResNet((3, 4, 6, 3), **kwargs)


def resnet18(**kwargs) -> ResNet:
    """ResNet-18: BasicBlock stages (2, 2, 2, 2)."""
    return ResNet((2, 2, 2, 2), **kwargs)

"""The ResNet family, built from the stage table of He et al., "Deep Residual Learning" (2015), Table 1.

State-dict keys match torchvision's ``resnet{18,34,50,101,152}`` so their checkpoints load strictly.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from rn50.errors import UsageError


def conv3x3(in_planes: int, out_planes: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_planes, out_planes, kernel_size=3, stride=stride, padding=1, bias=False)


def conv1x1(in_planes: int, out_planes: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_planes, out_planes, kernel_size=1, stride=stride, bias=False)


class BasicBlock(nn.Module):
    """Two 3x3 convolutions (ResNet-18/34)."""

    expansion = 1

    def __init__(self, inplanes: int, planes: int, stride: int = 1, downsample: nn.Module | None = None):
        super().__init__()
        self.conv1 = conv3x3(inplanes, planes, stride)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = conv3x3(planes, planes)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = downsample

    def forward(self, x: Tensor) -> Tensor:
        identity = x
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        if self.downsample is not None:
            identity = self.downsample(x)
        out += identity
        return self.relu(out)


class Bottleneck(nn.Module):
    """1x1 reduce, 3x3, 1x1 expand by 4 (ResNet-50/101/152).

    The stride sits on the 3x3 convolution, not the first 1x1 ("ResNet v1.5", as torchvision and
    most deployed checkpoints do): a strided 1x1 discards three quarters of its input.
    """

    expansion = 4

    def __init__(self, inplanes: int, planes: int, stride: int = 1, downsample: nn.Module | None = None):
        super().__init__()
        self.conv1 = conv1x1(inplanes, planes)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = conv3x3(planes, planes, stride)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = conv1x1(planes, planes * self.expansion)
        self.bn3 = nn.BatchNorm2d(planes * self.expansion)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x: Tensor) -> Tensor:
        identity = x
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        if self.downsample is not None:
            identity = self.downsample(x)
        out += identity
        return self.relu(out)


@dataclass(frozen=True)
class Variant:
    block: type[BasicBlock] | type[Bottleneck]
    layers: tuple[int, int, int, int]


# The paper's Table 1: block type and blocks per stage (conv2_x .. conv5_x).
VARIANTS: dict[int, Variant] = {
    18: Variant(BasicBlock, (2, 2, 2, 2)),
    34: Variant(BasicBlock, (3, 4, 6, 3)),
    50: Variant(Bottleneck, (3, 4, 6, 3)),
    101: Variant(Bottleneck, (3, 4, 23, 3)),
    152: Variant(Bottleneck, (3, 8, 36, 3)),
}
STAGE_WIDTHS = (64, 128, 256, 512)


class ResNet(nn.Module):
    def __init__(self, depth: int = 50, *, num_classes: int = 1000):
        super().__init__()
        if depth not in VARIANTS:
            raise UsageError(
                f"unsupported ResNet depth {depth!r}",
                fix=f"use one of {', '.join(map(str, VARIANTS))}",
            )
        if num_classes < 1:
            raise UsageError(f"num_classes must be >= 1, got {num_classes}", fix="pass a positive class count")
        variant = VARIANTS[depth]
        self.depth = depth
        self.inplanes = 64
        self.conv1 = nn.Conv2d(3, 64, kernel_size=7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        self.layer1 = self._make_layer(variant.block, STAGE_WIDTHS[0], variant.layers[0])
        self.layer2 = self._make_layer(variant.block, STAGE_WIDTHS[1], variant.layers[1], stride=2)
        self.layer3 = self._make_layer(variant.block, STAGE_WIDTHS[2], variant.layers[2], stride=2)
        self.layer4 = self._make_layer(variant.block, STAGE_WIDTHS[3], variant.layers[3], stride=2)
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(512 * variant.block.expansion, num_classes)

        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.constant_(m.weight, 1)
                nn.init.constant_(m.bias, 0)

    def _make_layer(
        self, block: type[BasicBlock] | type[Bottleneck], planes: int, blocks: int, stride: int = 1
    ) -> nn.Sequential:
        downsample = None
        out_planes = planes * block.expansion
        if stride != 1 or self.inplanes != out_planes:
            # Projection shortcut (paper's option B): only where the shape changes.
            downsample = nn.Sequential(conv1x1(self.inplanes, out_planes, stride), nn.BatchNorm2d(out_planes))
        layers = [block(self.inplanes, planes, stride, downsample)]
        self.inplanes = out_planes
        layers += [block(self.inplanes, planes) for _ in range(1, blocks)]
        return nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer1(x)
        x = self.layer2(x)
        x = self.layer3(x)
        x = self.layer4(x)
        x = torch.flatten(self.avgpool(x), 1)
        return self.fc(x)


def resnet(depth: int = 50, *, num_classes: int = 1000) -> ResNet:
    return ResNet(depth, num_classes=num_classes)

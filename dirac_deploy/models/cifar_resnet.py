"""He et al.'s CIFAR ResNet (ResNet-20/32/44/56/110: 6n+2 layers), the baseline of matching size for a
CIFAR-stem DiracNet.

conv3x3 -> BN -> ReLU, three stages of n BasicBlocks at widths (16, 32, 64) x width, the first block of stages
2 and 3 with stride 2 and the parameter-free shortcut of the paper's CIFAR experiments (option A: subsample
and pad the new channels with zeros), global average pool, fc. ResNet-20 has 0.27M parameters (the paper's
Table 6).
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import nn


class _PadShortcut(nn.Module):
    """Option A: x[:, :, ::2, ::2] with the extra output channels zero (no parameters)."""

    def __init__(self, extra: int):
        super().__init__()
        self.extra = extra

    def forward(self, x):
        return F.pad(x[:, :, ::2, ::2], (0, 0, 0, 0, 0, self.extra))


class CifarBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.shortcut = _PadShortcut(cout - cin) if stride != 1 or cin != cout else nn.Identity()

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        return F.relu(self.bn2(self.conv2(out)) + self.shortcut(x))


class CifarResNet(nn.Module):
    def __init__(self, n: int, widths: tuple[int, int, int] = (16, 32, 64), num_classes: int = 10, in_channels: int = 3):
        super().__init__()
        self.depth = 6 * n + 2
        self.conv1 = nn.Conv2d(in_channels, widths[0], 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(widths[0])
        prev, stages = widths[0], []
        for i, w in enumerate(widths):
            blocks = [CifarBlock(prev if b == 0 else w, w, 2 if (i > 0 and b == 0) else 1) for b in range(n)]
            stages.append(nn.Sequential(*blocks))
            prev = w
        self.layer1, self.layer2, self.layer3 = stages
        self.fc = nn.Linear(prev, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x):
        x = F.relu(self.bn1(self.conv1(x)))
        x = self.layer3(self.layer2(self.layer1(x)))
        return self.fc(F.adaptive_avg_pool2d(x, 1).flatten(1))


def cifar_resnet(depth: int, widths: tuple[int, int, int] = (16, 32, 64), num_classes: int = 10,
                 in_channels: int = 3) -> CifarResNet:
    """ResNet-`depth` for CIFAR (depth = 6n + 2: 20, 32, 44, 56, 110, ...)."""
    if depth < 8 or (depth - 2) % 6:
        raise ValueError(f"CIFAR ResNet depth must be 6n+2 with n >= 1, got {depth}")
    w1, w2, w3 = widths
    return CifarResNet((depth - 2) // 6, (w1, w2, w3), num_classes, in_channels)

"""Reference definition of scaled-identity residual nets (see `spec.ScaledIdentitySpec`).

The form that methods phasing out skip-connections train (Monti, Tootoonian, Cao; "Variable Activation
Networks"): one conv per shortcut, a learned shortcut scale s, and variable activations
alpha * relu(z) + (1 - alpha) * z. Users of these methods load their weights into this module (the state_dict
names are the documented checkpoint layout) and fold it with `dirac-deploy fold`.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..spec import ScaledIdentitySpec


class VariableActivation(nn.Module):
    """alpha * relu(z) + (1 - alpha) * z: ReLU at alpha = 1, LeakyReLU with slope 1 - alpha otherwise."""

    def __init__(self, alpha: float = 1.0):
        super().__init__()
        self.alpha = nn.Parameter(torch.tensor(float(alpha)))

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.alpha * F.relu(z) + (1 - self.alpha) * z


def _conv(cin: int, cout: int) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, 3, padding=1, bias=False)


class ConvBNAct(nn.Module):
    def __init__(self, cin: int, cout: int, eps: float):
        super().__init__()
        self.conv, self.bn, self.act = _conv(cin, cout), nn.BatchNorm2d(cout, eps=eps), VariableActivation()

    def forward(self, x):
        return self.act(self.bn(self.conv(x)))


class ScaledIdentityBlock(nn.Module):
    """One residual block with a scaled-identity shortcut, in the form `kind` names."""

    def __init__(self, channels: int, kind: str, per_channel: bool, eps: float):
        super().__init__()
        self.kind = kind
        self.scale = nn.Parameter(torch.ones(channels if per_channel else 1))
        self.conv, self.bn = _conv(channels, channels), nn.BatchNorm2d(channels, eps=eps)
        if kind == "two_conv":
            self.inner = ConvBNAct(channels, channels, eps)
        if kind != "preact":
            self.act = VariableActivation()

    def forward(self, x):
        s = self.scale.view(1, -1, 1, 1)
        if self.kind == "preact":
            return self.bn(self.conv(F.relu(x))) + s * x
        h = self.inner(x) if self.kind == "two_conv" else x
        return self.act(self.bn(self.conv(h)) + s * x)


class ScaledIdentityNet(nn.Module):
    def __init__(self, spec: ScaledIdentitySpec):
        super().__init__()
        self.spec = spec
        self.stem = ConvBNAct(spec.in_channels, spec.widths[0], spec.bn_eps)
        prev = spec.widths[0]
        for g, (width, count) in enumerate(zip(spec.widths, spec.blocks_per_group)):
            group = nn.Module()
            if g > 0:
                group.transition = ConvBNAct(prev, width, spec.bn_eps)
            group.blocks = nn.Sequential(*(ScaledIdentityBlock(width, spec.shortcut, spec.per_channel_shortcut,
                                                               spec.bn_eps) for _ in range(count)))
            self.add_module(f"group{g}", group)
            prev = width
        self.fc = nn.Linear(prev, spec.num_classes)

    def forward(self, x):
        o = self.stem(x)
        for g in range(len(self.spec.widths)):
            group = getattr(self, f"group{g}")
            if g > 0:
                o = group.transition(F.max_pool2d(o, 2))
            o = group.blocks(o)
        return self.fc(F.adaptive_avg_pool2d(o, 1).flatten(1))

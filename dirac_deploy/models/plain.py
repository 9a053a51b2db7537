"""The folded network: a plain chain of Conv2d, ReLU, MaxPool2d, global average pool and Linear
(plus LeakyReLU for variable-activation nets and NCReLU where a v1 net keeps it).

Built from a list of `LayerSpec`s so that the whole network (structure + weights) can be saved as plain
data and rebuilt without unpickling code.
"""

from __future__ import annotations

from collections import OrderedDict

import torch
from torch import nn

from ..spec import LayerSpec


def ncrelu(x: torch.Tensor) -> torch.Tensor:
    """NCReLU(x) = cat(relu(x), min(x, 0)) along channels (DiracNet v1)."""
    return torch.cat([x.clamp(min=0), x.clamp(max=0)], dim=1)


class NCReLU(nn.Module):
    """Module form of `ncrelu`: kept in a folded v1 chain where it cannot be absorbed (after a max-pool)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return ncrelu(x)


def _build_layer(layer: LayerSpec) -> nn.Module:
    a = layer.args
    if layer.kind == "conv":
        return nn.Conv2d(a["in_channels"], a["out_channels"], a["kernel_size"], stride=a.get("stride", 1),
                         padding=a.get("padding", 0), bias=a.get("bias", True))
    if layer.kind == "relu":
        return nn.ReLU()
    if layer.kind == "leaky_relu":
        return nn.LeakyReLU(a["negative_slope"])
    if layer.kind == "ncrelu":
        return NCReLU()
    if layer.kind == "maxpool":
        return nn.MaxPool2d(a["kernel_size"], stride=a.get("stride"), padding=a.get("padding", 0))
    if layer.kind == "gap":
        return nn.AdaptiveAvgPool2d(1)
    if layer.kind == "flatten":
        return nn.Flatten(1)
    if layer.kind == "linear":
        return nn.Linear(a["in_features"], a["out_features"])
    raise ValueError(f"unknown layer kind {layer.kind!r} in layer {layer.name!r}")


class PlainNet(nn.Sequential):
    """A conv-ReLU chain; `layers` keeps the specs it was built from."""

    def __init__(self, layers: list[LayerSpec]):
        super().__init__(OrderedDict((layer.name, _build_layer(layer)) for layer in layers))
        self.layers = list(layers)

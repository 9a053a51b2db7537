"""Layout (c): the published folded ImageNet files (`diracnet18v2folded-a2174e15.pth`).

A plain state_dict saved from the original `DiracNet` module, whose dotted module names no longer load in
current PyTorch: `features.conv.{weight,bias}`, `features.group{g}.block{b}.conv.{weight,bias}`, `fc.*`.
Its forward (the export notebook): conv(stride 2) -> maxpool 3/2/1 -> per block conv(relu(o)) with max-pool 2
between groups -> relu -> global average pool -> fc. `OriginalFoldedNet` transcribes that forward literally,
so the remapped, reordered plain chain can be checked against it.
"""

from __future__ import annotations

import re

import torch
import torch.nn.functional as F
from torch import nn

from ._raw import RawModel

NAME = "v2-folded"
DESCRIPTION = "published folded v2 state_dict: features.conv.*, features.group{g}.block{b}.conv.*, fc.*"
EXPECTED = "keys features.conv.weight, features.conv.bias, features.group0.block0.conv.weight, ..., fc.weight, fc.bias"
_BLOCK = re.compile(r"^features\.(group\d+)\.(block\d+)\.conv\.(weight|bias)$")


def detect(obj) -> bool:
    if not (isinstance(obj, dict) and isinstance(obj.get("features.conv.weight"), torch.Tensor)):
        return False
    from .v1_folded import reads_ncrelu  # v1 folded files may carry the same prefix

    return not reads_ncrelu({k.removeprefix("features."): v for k, v in obj.items() if isinstance(k, str)})


def read(obj):
    """Remap to plain-chain names: `stem_conv`, `group{g}_block{b}_conv`, `fc`."""
    sd = {}
    for k, v in obj.items():
        if k in ("features.conv.weight", "features.conv.bias"):
            sd["stem_conv." + k.rsplit(".", 1)[1]] = v
        elif m := _BLOCK.match(k):
            sd[f"{m.group(1)}_{m.group(2)}_conv.{m.group(3)}"] = v
        else:
            sd[k] = v
    return RawModel(sd, folded=True)


def reference(obj: dict, spec) -> nn.Module:
    """The source's own forward, evaluated on its tensors (what the remapped chain is checked against)."""
    return OriginalFoldedNet(obj, spec.stem, spec.convs_per_group, spec.final_relu)


class OriginalFoldedNet(nn.Module):
    """The original folded forward, evaluated directly on the source tensors (the reference for layout c)."""

    def __init__(self, source: dict, stem: str, convs_per_group: tuple[int, ...], final_relu: bool = True):
        super().__init__()
        self.source = {k: v.float() for k, v in source.items()}
        self.stem, self.convs_per_group, self.final_relu = stem, convs_per_group, final_relu

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = self.source
        if self.stem == "imagenet":
            o = F.max_pool2d(F.conv2d(x, s["features.conv.weight"], s["features.conv.bias"], stride=2, padding=3), 3, 2, 1)
        else:
            o = F.relu(F.conv2d(x, s["features.conv.weight"], s["features.conv.bias"], padding=1))
        for g, count in enumerate(self.convs_per_group):
            if g > 0:
                o = F.max_pool2d(o, 2)
            for b in range(count):
                key = f"features.group{g}.block{b}.conv"
                o = F.conv2d(F.relu(o), s[key + ".weight"], s[key + ".bias"], padding=1)
        if self.final_relu:
            o = F.relu(o)
        o = F.adaptive_avg_pool2d(o, 1).flatten(1)
        return F.linear(o, s["fc.weight"], s["fc.bias"])

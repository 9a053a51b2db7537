"""Layout (v1 folded): the released folded v1 models (`diracnet-18-0.75-br-export.hkl`, converted to .pth).

A v1 net folded by the v1 notebook: `conv.weight`, `conv.bias` (stem, BN folded in), `group{g}.block{b}.conv.
{weight,bias}` of shape [out, 2 x in, 3, 3] (each block conv reads NCReLU's output), `fc.*`; with or without a
`features.` prefix. Its forward (the notebook's functional folded definition): conv (stride 2) -> max-pool
3/2/1 -> per block conv(ncrelu(o)), max-pool 2 between groups -> relu -> average pool -> fc. NCReLU stays an
op and no conv grows. `OriginalFoldedNetV1` transcribes that forward literally.
"""

from __future__ import annotations

import re

import torch
import torch.nn.functional as F
from torch import nn

from ._raw import RawModel

NAME = "v1-folded"
DESCRIPTION = "released folded v1 state_dict: conv.*, group{g}.block{b}.conv.* over 2x channels (NCReLU), fc.*"
EXPECTED = ("keys [features.]conv.weight, [features.]conv.bias, [features.]group0.block0.conv.weight of shape "
            "[out, 2 x in, 3, 3], ..., fc.weight")
_BLOCK = re.compile(r"^(group\d+)\.(block\d+)\.conv\.(weight|bias)$")


def _strip(obj: dict) -> dict:
    return {k.removeprefix("features."): v for k, v in obj.items() if isinstance(k, str)}


def reads_ncrelu(sd: dict) -> bool:
    """Block convs reading twice the stem's channels: a v1 (NCReLU) net."""
    stem, first = sd.get("conv.weight"), sd.get("group0.block0.conv.weight")
    return (isinstance(stem, torch.Tensor) and isinstance(first, torch.Tensor) and stem.dim() == 4
            and first.dim() == 4 and first.shape[1] == 2 * stem.shape[0])


def detect(obj) -> bool:
    if not isinstance(obj, dict):
        return False
    sd = _strip(obj)
    return isinstance(sd.get("conv.bias"), torch.Tensor) and "fc.weight" in sd and reads_ncrelu(sd)


def read(obj):
    """Remap to plain-chain names: `stem_conv`, `group{g}_block{b}_conv`, `fc`."""
    sd = {}
    for k, v in _strip(obj).items():
        if k in ("conv.weight", "conv.bias"):
            sd["stem_conv." + k.rsplit(".", 1)[1]] = v
        elif m := _BLOCK.match(k):
            sd[f"{m.group(1)}_{m.group(2)}_conv.{m.group(3)}"] = v
        else:
            sd[k] = v
    return RawModel(sd, folded=True, hints={"final_relu": True},
                    notes=["folded v1 (NCReLU) file: the notebook's folded forward, a ReLU before the average pool"])


def reference(obj: dict, spec) -> nn.Module:
    return OriginalFoldedNetV1(_strip(obj), spec.stem, spec.convs_per_group, spec.final_relu)


class OriginalFoldedNetV1(nn.Module):
    """The v1 notebook's folded functional forward, evaluated directly on the source tensors."""

    def __init__(self, source: dict, stem: str, convs_per_group: tuple[int, ...], final_relu: bool = True):
        super().__init__()
        self.source = {k: v.float() for k, v in source.items()}
        self.stem, self.convs_per_group, self.final_relu = stem, convs_per_group, final_relu

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = self.source
        if self.stem == "imagenet":
            o = F.max_pool2d(F.conv2d(x, s["conv.weight"], s["conv.bias"], padding=3, stride=2), 3, 2, 1)
        else:
            o = F.relu(F.conv2d(x, s["conv.weight"], s["conv.bias"], padding=1))
        for g, count in enumerate(self.convs_per_group):
            if g > 0:
                o = F.max_pool2d(o, 2)
            for b in range(count):
                key = f"group{g}.block{b}.conv"
                o = F.conv2d(torch.cat([o.clamp(min=0), o.clamp(max=0)], 1), s[key + ".weight"], s[key + ".bias"],
                             padding=1)
        if self.final_relu:
            o = F.relu(o)
        o = F.adaptive_avg_pool2d(o, 1).flatten(1)
        return F.linear(o, s["fc.weight"], s["fc.bias"])

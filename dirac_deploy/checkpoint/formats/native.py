"""Layout (d): the state_dict of this project's own `dirac_deploy.models.dirac.DiracNet`.

Keys `conv.weight`, `bn.*`, `group{g}.block{b}.conv.{weight,alpha,beta,delta}`, `group{g}.block{b}.bn.*`,
`fc.*`. A missing `delta` buffer is regenerated.
"""

from __future__ import annotations

import torch

from ...kernels import dirac_delta
from ._raw import RawModel

NAME = "dirac-deploy"
DESCRIPTION = "dirac-deploy DiracNet state_dict: conv.weight, group{g}.block{b}.conv.{weight,alpha,beta}, ..."
EXPECTED = "keys conv.weight, bn.running_mean, group0.block0.conv.weight, group0.block0.conv.alpha, ..., fc.weight"


def detect(obj) -> bool:
    return (isinstance(obj, dict) and isinstance(obj.get("conv.weight"), torch.Tensor)
            and "group0.block0.conv.alpha" in obj)


def read(obj):
    sd, regenerated = dict(obj), 0
    for k, v in obj.items():
        if isinstance(k, str) and k.endswith(".conv.weight") and k.startswith("group"):
            dk = k[: -len("weight")] + "delta"
            if dk not in sd and isinstance(v, torch.Tensor) and v.dim() == 4:
                sd[dk] = dirac_delta(v.shape[0], v.shape[1], v.shape[2], dtype=v.dtype)
                regenerated += 1
    notes = [f"regenerated the Dirac delta of {regenerated} conv(s)"] if regenerated else []
    return RawModel(sd, notes=notes)

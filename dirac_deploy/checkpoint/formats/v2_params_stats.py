"""Layout (b): the published unfolded ImageNet checkpoints (`diracnet18-v2_checkpoint.pth`), Jan 2018.

`{'params': {conv, bn.weight, bn.bias, group{g}.block{b}.{conv,alpha,beta,bn.weight,bn.bias}, fc.*},
  'stats': {bn.running_mean, bn.running_var, group.../bn.running_*, eye{no}_{ni}_3_3}}`.
"""

from __future__ import annotations

from ._original_v2 import is_v1, looks_like_original, to_native
from ._raw import RawModel

NAME = "v2-params-stats"
DESCRIPTION = "published unfolded v2 checkpoint: {'params': weights, 'stats': running stats and eye deltas}"
EXPECTED = "top level {'params', 'stats'}; params keys conv, group0.block0.conv, group0.block0.alpha, ...; stats keys bn.running_mean, eye64_64_3_3, ..."


def detect(obj) -> bool:
    return (isinstance(obj, dict) and isinstance(obj.get("stats"), dict) and looks_like_original(obj.get("params"))
            and not is_v1(obj["params"]))


def read(obj):
    merged = {**obj["stats"], **obj["params"]}
    sd, notes = to_native(merged)
    return RawModel(sd, notes=notes)

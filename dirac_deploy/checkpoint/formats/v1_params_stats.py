"""Layout (v1): DiracNet v1 (NCReLU) checkpoints from the original repository's `v1` branch.

`torch.save(dict(params=..., stats=..., ...), 'model.pt7')`: params hold `conv`, `bn.{weight,bias}`,
`group{g}.block{b}.conv` (weight of shape [out, 2 x in, 3, 3]), scalar `...alpha` and `...beta`,
`...bn.{weight,bias}`, `fc.*`; stats hold the running statistics and the tiled `eye...` deltas.
The released v1 `.hkl` files (converted by converters/hkl_to_pth.py) name the scales differently:
`...conv.gamma` (the delta scale, shape [1]) and `...conv.beta` (the weight scale, per channel); both
spellings are read. The forward differs too: the v1 branch's diracnet.py has no ReLU before the average pool,
while the v1 notebook that documents the released models ("original definition") has one. So a file in the
released naming gets `final_relu=True`, one in the functional naming `final_relu=False` (`--final-relu` /
`--no-final-relu` override either).
"""

from __future__ import annotations

import re

from ._original_v2 import is_v1, looks_like_original, to_native
from ._raw import RawModel

NAME = "v1-params-stats"
DESCRIPTION = "DiracNet v1 (NCReLU): {'params': weights, 'stats': running stats and tiled eye deltas}"
EXPECTED = ("top level {'params', 'stats'}; params keys conv, group0.block0.conv (2x input channels), "
            "group0.block0.alpha or group0.block0.conv.gamma, ...")
_HKL_SCALE = re.compile(r"^(group\d+\.block\d+)\.conv\.(gamma|beta)$")


def detect(obj) -> bool:
    return (isinstance(obj, dict) and isinstance(obj.get("stats"), dict) and looks_like_original(obj.get("params"))
            and is_v1(obj["params"]))


def read(obj):
    merged, released = {}, False
    for k, v in {**obj["stats"], **obj["params"]}.items():
        m = _HKL_SCALE.match(k) if isinstance(k, str) else None
        if m:  # released-file naming: conv.gamma scales the delta (alpha), conv.beta scales W (beta)
            k = f"{m.group(1)}.{'alpha' if m.group(2) == 'gamma' else 'beta'}"
            released = True
        merged[k] = v
    sd, notes = to_native(merged, tiled_delta=True)
    if released:
        notes.append("released v1 naming (conv.gamma / conv.beta): the notebook's forward, with a ReLU before the "
                     "average pool")
    return RawModel(sd, notes=notes, hints={"final_relu": released})

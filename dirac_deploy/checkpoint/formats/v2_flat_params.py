"""Layout (a): what the original `train.py` (master HEAD, PyTorch 0.4) saves as `model.pt7`.

`{'params': flat dict, 'epoch': int, 'optimizer': state_dict}` where the flat dict also holds the BN running
statistics and the `eye...` deltas. Tensors may have been saved on CUDA (loaded with map_location='cpu').
"""

from __future__ import annotations

from ._original_v2 import is_v1, looks_like_original, to_native
from ._raw import RawModel

NAME = "v2-flat-params"
DESCRIPTION = "original train.py model.pt7: {'params': flat dict with running stats and eye deltas, 'epoch', 'optimizer'}"
EXPECTED = "top level {'params', 'epoch', 'optimizer'}; params keys conv, bn.running_mean, group0.block0.conv, group0.block0.alpha, ..., fc.weight"


def detect(obj) -> bool:
    return (isinstance(obj, dict) and "stats" not in obj and looks_like_original(obj.get("params"))
            and "bn.running_mean" in obj["params"] and not is_v1(obj["params"]))


def read(obj):
    sd, notes = to_native(obj["params"])
    if "epoch" in obj:
        notes.append(f"saved at epoch {obj['epoch']}")
    return RawModel(sd, notes=notes)

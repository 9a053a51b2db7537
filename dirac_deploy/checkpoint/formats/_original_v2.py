"""Key mapping shared by the unfolded layouts of the original code (v2 flat params; v2 and v1 params + stats).

Original flat keys: `conv`, `bn.{weight,bias,running_mean,running_var}`, `group{g}.block{b}.conv` (the raw
weight), `...alpha`, `...beta`, `...bn.*`, `fc.{weight,bias}`, and one `eye{no}_{ni}_{k}_{k}` delta per weight
shape. Missing deltas are regenerated with `dirac_` semantics.
"""

from __future__ import annotations

import re

import torch

from ...kernels import dirac_delta, dirac_delta_v1

_EYE = re.compile(r"^eye\d+(_\d+)+$")
_BLOCK_CONV = re.compile(r"^(group\d+\.block\d+)\.conv$")


def looks_like_original(params) -> bool:
    return isinstance(params, dict) and isinstance(params.get("conv"), torch.Tensor) and any(
        _BLOCK_CONV.match(k) for k in params if isinstance(k, str))


def is_v1(params: dict) -> bool:
    """v1 block convs read NCReLU(x): twice the stem's output channels."""
    stem, first = params.get("conv"), params.get("group0.block0.conv")
    return (isinstance(stem, torch.Tensor) and isinstance(first, torch.Tensor) and stem.dim() == 4
            and first.dim() == 4 and first.shape[1] == 2 * stem.shape[0])


def eye_key(shape) -> str:
    return "eye" + "_".join(str(int(s)) for s in shape)


def to_native(flat: dict, tiled_delta: bool = False) -> tuple[dict, list[str]]:
    """Original flat dict -> native `DiracNet` state_dict, plus notes on what was regenerated.

    Missing deltas are rebuilt with v2's `dirac_` semantics, or v1's tiled delta when `tiled_delta`.
    """
    make_delta = dirac_delta_v1 if tiled_delta else dirac_delta
    sd, notes, regenerated = {}, [], 0
    for k, v in flat.items():
        if not isinstance(k, str) or _EYE.match(k):
            continue
        if k == "conv":
            sd["conv.weight"] = v
        elif m := _BLOCK_CONV.match(k):
            sd[f"{m.group(1)}.conv.weight"] = v
            eye = flat.get(eye_key(v.shape)) if isinstance(v, torch.Tensor) else None
            if eye is None and isinstance(v, torch.Tensor) and v.dim() == 4:
                eye = make_delta(v.shape[0], v.shape[1], v.shape[2], dtype=v.dtype)
                regenerated += 1
            sd[f"{m.group(1)}.conv.delta"] = eye
        elif re.match(r"^group\d+\.block\d+\.(alpha|beta)$", k):
            block, name = k.rsplit(".", 1)
            sd[f"{block}.conv.{name}"] = v
        else:
            sd[k] = v
    if regenerated:
        notes.append(f"regenerated the Dirac delta of {regenerated} conv(s) (no eye... tensor stored)")
    return sd, notes

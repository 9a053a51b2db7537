"""One module per checkpoint layout. Each defines NAME, DESCRIPTION, EXPECTED, `detect(obj)` and `read(obj)`.

`read` returns a `RawModel`: canonical tensors plus notes. Unfolded layouts give native `DiracNet` keys;
the published folded layout gives plain-chain keys and `folded=True`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from . import native, scaled_identity, v1_params_stats, v2_flat_params, v2_folded, v2_params_stats


@dataclass
class RawModel:
    state_dict: dict
    folded: bool = False
    notes: list[str] = field(default_factory=list)
    spec: object = None  # a documented architecture, for layouts that store one instead of inferring it


# Order matters only for readability: the detectors are mutually exclusive.
LAYOUTS = (v2_flat_params, v2_params_stats, v2_folded, v1_params_stats, native, scaled_identity)

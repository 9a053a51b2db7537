"""One module per checkpoint layout. Each defines NAME, DESCRIPTION, EXPECTED, `detect(obj)` and `read(obj)`.

`read` returns a `RawModel`: canonical tensors plus notes. Unfolded layouts give native `DiracNet` keys;
the published folded layout gives plain-chain keys and `folded=True`.
"""

from __future__ import annotations

from . import native, scaled_identity, v1_folded, v1_params_stats, v2_flat_params, v2_folded, v2_params_stats
from ._raw import RawModel

__all__ = ["LAYOUTS", "RawModel"]

# Order matters only for readability: the detectors are mutually exclusive.
LAYOUTS = (v2_flat_params, v2_params_stats, v2_folded, v1_params_stats, v1_folded, native, scaled_identity)

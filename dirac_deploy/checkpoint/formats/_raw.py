"""What a layout reader returns (shared by every layout module)."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class RawModel:
    """Canonical tensors plus notes. Unfolded layouts give native `DiracNet` keys; folded layouts give
    plain-chain keys and `folded=True`; layouts that document their architecture set `spec`."""

    state_dict: dict
    folded: bool = False
    notes: list[str] = field(default_factory=list)
    spec: object = None
    hints: dict = field(default_factory=dict)  # architecture facts the layout implies (e.g. final_relu)

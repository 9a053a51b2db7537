"""Layout: scaled-identity residual nets (phasing-out / variable-activation methods).

    {"format": "dirac-deploy/scaled-identity", "version": 1,
     "architecture": ScaledIdentitySpec.to_dict(),        # widths, blocks_per_group, num_classes, shortcut, ...
     "state_dict": ScaledIdentityNet(spec).state_dict()}  # stem.{conv,bn,act.alpha}, group{g}.transition.*,
                                                           # group{g}.blocks.{i}.{conv,bn,scale,act.alpha}, fc.*

`checkpoint_payload(model)` writes it; map your own training code's names onto these keys to load your net.
The architecture is stored, not inferred: the shortcut form decides whether the net can fold at all.
"""

from __future__ import annotations

from ...errors import CheckpointError
from ...spec import ScaledIdentitySpec
from ._raw import RawModel

NAME = "scaled-identity"
FORMAT = "dirac-deploy/scaled-identity"
DESCRIPTION = "scaled-identity residual net: {'format', 'architecture', 'state_dict'}"
EXPECTED = f"top level {{'format': '{FORMAT}', 'version': 1, 'architecture': {{...}}, 'state_dict': {{...}}}}"


def detect(obj) -> bool:
    return isinstance(obj, dict) and obj.get("format") == FORMAT


def read(obj):
    if obj.get("version") != 1:
        raise CheckpointError(f"{NAME} checkpoint version {obj.get('version')!r}; this dirac-deploy reads version 1")
    try:
        spec = ScaledIdentitySpec.from_dict(dict(obj["architecture"]))
    except (KeyError, TypeError, ValueError) as e:
        raise CheckpointError(f"bad 'architecture' in {NAME} checkpoint: {e}") from None
    if not isinstance(obj.get("state_dict"), dict):
        raise CheckpointError(f"{NAME} checkpoint has no 'state_dict' dict")
    return RawModel(dict(obj["state_dict"]), spec=spec)


def checkpoint_payload(model) -> dict:
    """The documented checkpoint of a `ScaledIdentityNet` (save it with torch.save)."""
    return {"format": FORMAT, "version": 1, "architecture": model.spec.to_dict(),
            "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()}}

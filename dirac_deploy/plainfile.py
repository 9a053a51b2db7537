"""The folded artifact on disk (`plain.pth`): self-describing, readable with `torch.load(weights_only=True)`.

Contents: `{"format": "dirac-deploy/plain", "version": 1, "layers": [LayerSpec dicts], "state_dict": {...},
"meta": {...}}`. `meta` records the source sha256, detected layout, architecture, the measured fold error,
input size and normalization.
"""

from __future__ import annotations

from pathlib import Path

import torch

from .checkpoint.reading import load_torch_file
from .errors import CheckpointError
from .fileio import atomic_write
from .models.plain import PlainNet
from .spec import LayerSpec

FORMAT = "dirac-deploy/plain"
VERSION = 1


def save_plain(path: str | Path, plain: PlainNet, meta: dict) -> Path:
    """Write `plain` and its metadata atomically (temp file + rename)."""
    payload = {"format": FORMAT, "version": VERSION, "layers": [layer.to_dict() for layer in plain.layers],
               "state_dict": {k: v.detach().cpu().contiguous() for k, v in plain.state_dict().items()},
               "meta": meta}

    def write(tmp: Path) -> None:
        torch.save(payload, tmp)
        # Prove the artifact loads the way users will load it before it replaces anything.
        plain_from_payload(torch.load(tmp, map_location="cpu", weights_only=True), str(path))

    return atomic_write(path, write)


def is_plain_file(obj) -> bool:
    return isinstance(obj, dict) and obj.get("format") == FORMAT


def plain_from_payload(obj, where: str) -> tuple[PlainNet, dict]:
    """Rebuild the chain from a loaded payload, validating it as untrusted data."""
    if not is_plain_file(obj):
        raise CheckpointError(f"{where} is not a dirac-deploy plain file (no format tag {FORMAT!r}); "
                              f"make one with: dirac-deploy fold CHECKPOINT -o plain.pth")
    if obj.get("version") != VERSION:
        raise CheckpointError(f"{where} is plain-file version {obj.get('version')!r}; this dirac-deploy reads version {VERSION}")
    try:
        layers = [LayerSpec.from_dict(d) for d in obj["layers"]]
        plain = PlainNet(layers)
        plain.load_state_dict(obj["state_dict"], strict=True)
    except (KeyError, TypeError, ValueError, RuntimeError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise CheckpointError(f"{where} is a damaged plain file: {first}") from None
    for k, v in plain.state_dict().items():
        if not torch.isfinite(v).all():
            raise CheckpointError(f"{where}: {k} contains NaN/Inf values")
    return plain.eval(), dict(obj.get("meta", {}))


def read_plain(path: str | Path) -> tuple[PlainNet, dict]:
    """The plain chain (eval mode) and its metadata."""
    return plain_from_payload(load_torch_file(path), str(path))


def load_plain(path: str | Path) -> PlainNet:
    """Load a folded `plain.pth` as an `nn.Module` in eval mode; `.meta` holds its metadata."""
    plain, meta = read_plain(path)
    plain.meta = meta
    return plain

"""The folded artifact on disk (`plain.pth`): self-describing, readable with `torch.load(weights_only=True)`.

Contents: `{"format": "dirac-deploy/plain", "version": 1, "layers": [LayerSpec dicts], "state_dict": {...},
"meta": {...}}`. `meta` records the source sha256, detected layout, architecture, the measured fold error,
input size and normalization.
"""

from __future__ import annotations

import math
from pathlib import Path

import torch

from .checkpoint.reading import load_torch_file
from .errors import CheckpointError, first_line
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
        _check_layers(layers, obj["state_dict"])  # before building: the layer args decide what gets allocated
        plain = PlainNet(layers)
        plain.load_state_dict(obj["state_dict"], strict=True)
    except (KeyError, TypeError, ValueError, RuntimeError, AttributeError) as e:
        first = first_line(e)
        raise CheckpointError(f"{where} is a damaged plain file: {first[:300]}") from None
    for k, v in plain.state_dict().items():
        if not torch.isfinite(v).all():
            raise CheckpointError(f"{where}: {k} contains NaN/Inf values")
    return plain.eval(), _check_meta(obj.get("meta", {}), where, plain)


_POSITIVE = {"kernel_size", "stride", "in_channels", "out_channels", "in_features", "out_features"}
_WEIGHT_SHAPES = {"conv": lambda a: (a["out_channels"], a["in_channels"], a["kernel_size"], a["kernel_size"]),
                  "linear": lambda a: (a["out_features"], a["in_features"])}


def _check_layers(layers: list[LayerSpec], state_dict) -> None:
    """Layer arguments that are small integers and agree with the stored tensors (so building allocates only
    what the file holds)."""
    if not isinstance(state_dict, dict) or not layers:
        raise ValueError("no layers or no state_dict")
    for key, value in state_dict.items():
        if isinstance(value, torch.Tensor) and not value.is_floating_point():
            raise ValueError(f"{key} holds {value.dtype} values; a folded chain's tensors are floating point")
    for layer in layers:
        if not isinstance(layer.name, str) or not isinstance(layer.args, dict):
            raise ValueError(f"layer {layer.name!r} has malformed fields")
        for key, value in layer.args.items():
            if key == "negative_slope":
                if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                    raise ValueError(f"layer {layer.name!r}: negative_slope = {value!r:.40} is not a finite number")
                continue
            if isinstance(value, bool):
                continue
            if value is not None and (not isinstance(value, int) or not 0 <= value <= 1 << 20):
                raise ValueError(f"layer {layer.name!r}: {key} = {value!r:.40} is not a small non-negative integer")
            if key in _POSITIVE and value is not None and value < 1:
                raise ValueError(f"layer {layer.name!r}: {key} = {value} (must be at least 1)")
        if layer.kind in _WEIGHT_SHAPES:
            w = state_dict.get(f"{layer.name}.weight")
            shape = _WEIGHT_SHAPES[layer.kind](layer.args)
            if not isinstance(w, torch.Tensor) or tuple(w.shape) != shape:
                got = list(w.shape) if isinstance(w, torch.Tensor) else type(w).__name__
                raise ValueError(f"layer {layer.name!r} declares weight {list(shape)}, the file stores {got}")


def _check_meta(meta, where: str, plain: PlainNet) -> dict:
    """The metadata fields readers rely on, type-checked (a damaged field is an error, not a traceback later)."""
    if not isinstance(meta, dict):
        raise CheckpointError(f"{where}: 'meta' is a {type(meta).__name__}, expected a dict; re-fold the checkpoint")
    for key in ("architecture", "source", "fold_proof", "fold", "input_normalization"):
        if key in meta and not isinstance(meta[key], dict):
            raise CheckpointError(f"{where}: meta[{key!r}] is a {type(meta[key]).__name__}, expected a dict")
    channels = plain.layers[0].args.get("in_channels")
    for key in ("mean", "std"):
        v = meta.get(key)
        if v is None:
            continue
        if (not isinstance(v, list) or len(v) != channels
                or not all(isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x) for x in v)
                or (key == "std" and not all(x > 0 for x in v))):
            raise CheckpointError(f"{where}: meta[{key!r}] is {v!r:.80}, expected {channels} finite numbers"
                                  f"{' > 0' if key == 'std' else ''}")
    return dict(meta)


def read_plain(path: str | Path) -> tuple[PlainNet, dict]:
    """The plain chain (eval mode) and its metadata."""
    return plain_from_payload(load_torch_file(path), str(path))


def load_plain(path: str | Path) -> PlainNet:
    """Load a folded `plain.pth` as an `nn.Module` in eval mode; `.meta` holds its metadata."""
    plain, meta = read_plain(path)
    plain.meta = meta
    return plain

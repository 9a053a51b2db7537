"""Reading untrusted checkpoint files: `torch.load(weights_only=True)` unless the user opts in.

Also undoes the usual wrappers (`state_dict`/`model` sub-dicts, `module.`/`_orig_mod.` prefixes).
"""

from __future__ import annotations

import pickle
import re
from collections.abc import Mapping
from pathlib import Path

import torch

from ..errors import CheckpointError, UnsafeCheckpointError
from ..fileio import model_file_kind

_PREFIXES = ("module.", "_orig_mod.")


def _first_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return text[0] if text else type(e).__name__


def load_torch_file(path: str | Path, *, trust: bool = False):
    """Load a torch file onto the CPU.

    Args:
        path: the file.
        trust: allow full unpickling (arbitrary code execution); off by default.

    Raises:
        CheckpointError: missing, unreadable, not a torch file, truncated or corrupt.
        UnsafeCheckpointError: the file stores Python objects that need full unpickling and trust is off.
    """
    path = Path(path)
    if model_file_kind(path) != "torch":
        raise CheckpointError(f"{path} is an ONNX model, not a PyTorch checkpoint; commands that take MODEL read "
                              f"it directly (export, bench, serve, inspect)")
    try:
        return torch.load(path, map_location="cpu", weights_only=not trust)
    except pickle.UnpicklingError as e:
        m = re.search(r"Unsupported global: GLOBAL ([\w.]+)", str(e))
        if m and not trust:
            raise UnsafeCheckpointError(
                f"{path} stores a Python object ({m.group(1)}) that only full unpickling can load, and unpickling "
                f"can run arbitrary code; if you trust where the file came from, re-run with --trust-checkpoint"
            ) from None
        raise CheckpointError(f"cannot read {path}: truncated or corrupt torch file ({_first_line(e)})") from None
    except (RuntimeError, EOFError, ValueError, OSError, AttributeError, ImportError, IndexError, KeyError) as e:
        raise CheckpointError(f"cannot read {path}: truncated or corrupt torch file ({_first_line(e)})") from None


def _strip(d: Mapping) -> dict:
    out = {}
    for k, v in d.items():
        key = k
        if isinstance(key, str):
            for p in _PREFIXES:
                while key.startswith(p):
                    key = key[len(p):]
        out[key] = v
    return out


def unwrap(obj):
    """Undo common wrappers: a trusted `nn.Module`, `{'state_dict': ...}` / `{'model': ...}`, DataParallel prefixes."""
    if isinstance(obj, torch.nn.Module):
        obj = obj.state_dict()
    if isinstance(obj, Mapping) and "params" not in obj and "format" not in obj:
        for key in ("state_dict", "model"):
            inner = obj.get(key)
            if isinstance(inner, torch.nn.Module):
                inner = inner.state_dict()
            if isinstance(inner, Mapping):
                obj = inner
                break
    if not isinstance(obj, Mapping):
        return obj
    obj = _strip(obj)
    for key in ("params", "stats"):
        if isinstance(obj.get(key), Mapping):
            obj[key] = _strip(obj[key])
    return obj

"""Reading untrusted checkpoint files: `torch.load(weights_only=True)` unless the user opts in.

Before unpickling, a zip archive (what `torch.save` writes) is checked: its CRCs must match, and the data it
declares must fit in the file (torch.save stores entries uncompressed, so a large inflation ratio is a zip
bomb). After loading, every tensor must be a dense CPU tensor whose storage holds all its elements (a
stride-0 view could declare terabytes over a few bytes), of at most `MAX_ELEMENTS` elements in all.
Also undoes the usual wrappers (`state_dict`/`model` sub-dicts, `module.`/`_orig_mod.` prefixes).
"""

from __future__ import annotations

import pickle
import re
import warnings
import zipfile
from collections.abc import Mapping
from pathlib import Path

import torch

from ..errors import CheckpointError, UnsafeCheckpointError, first_line
from ..kinds import ArtifactKind, kind_of

_PREFIXES = ("module.", "_orig_mod.")
# Both spellings torch uses for a blocked global: "Unsupported global: GLOBAL builtins.eval was not an
# allowed global" and (torch >= 2.10 for blocked modules) "Trying to load unsupported GLOBAL posix.system
# whose module posix is blocked".
_GLOBAL = re.compile(r"(?:Unsupported global: GLOBAL|unsupported GLOBAL) ([\w.]+)")
_UNPICKLER = re.compile(r"WeightsUnpickler error:\s*([^\n]+)")
MAX_ELEMENTS = 4_000_000_000  # 16 GB of fp32: far beyond any DiracNet (DiracNet-34 has 22 M parameters)
_SLACK = 1 << 20  # zip headers and pickle bytes a stored archive adds to its entries


def _check_archive(path: Path) -> None:
    """CRCs match and the declared data fits in the file (the stored entries torch.save writes)."""
    try:
        with zipfile.ZipFile(path) as archive:
            declared = sum(i.file_size for i in archive.infolist())
            size = path.stat().st_size
            if declared > 2 * size + _SLACK:
                raise CheckpointError(f"{path} declares {declared:,} bytes of data in a {size:,}-byte archive "
                                      f"(compressed entries; torch.save writes none): refusing a possible zip bomb")
            bad = archive.testzip()
    except zipfile.BadZipFile as e:
        raise CheckpointError(f"cannot read {path}: truncated or corrupt zip archive ({e})") from None
    except (OSError, EOFError, NotImplementedError, RuntimeError) as e:
        raise CheckpointError(f"cannot read {path}: corrupt zip archive ({first_line(e)})") from None
    if bad is not None:
        raise CheckpointError(f"cannot read {path}: entry {bad!r} fails its CRC check (the file is corrupt)")


def _check_tensors(obj, path: Path) -> None:
    """Every tensor dense, on the CPU, not quantized, its storage holding its elements; bounded in total."""
    total, stack, seen = 0, [(obj, 0)], 0
    while stack:
        item, depth = stack.pop()
        seen += 1
        if depth > 32 or seen > 1_000_000:
            raise CheckpointError(f"{path} nests its contents deeper or wider than any checkpoint does")
        if isinstance(item, Mapping):
            stack += [(v, depth + 1) for v in item.values()]
        elif isinstance(item, (list, tuple)):
            stack += [(v, depth + 1) for v in item]
        elif isinstance(item, torch.Tensor):
            kind = ("a meta tensor" if item.is_meta else "a sparse tensor" if item.layout != torch.strided
                    else "a quantized tensor" if item.is_quantized else None)
            if kind:
                raise CheckpointError(f"{path} holds {kind} ({list(item.shape)}); a checkpoint to fold holds dense "
                                      f"float tensors")
            if item.numel() * item.element_size() > item.untyped_storage().nbytes():
                raise CheckpointError(f"{path} holds a tensor of shape {list(item.shape)} over only "
                                      f"{item.untyped_storage().nbytes():,} bytes of storage (a stride-0 view); a "
                                      f"checkpoint stores its tensors' elements")
            total += item.numel()
            if total > MAX_ELEMENTS:
                raise CheckpointError(f"{path} holds more than {MAX_ELEMENTS:,} tensor elements; not a DiracNet")


def load_torch_file(path: str | Path, *, trust: bool = False, kind: ArtifactKind | None = None):
    """Load a torch file onto the CPU.

    Args:
        path: the file.
        trust: allow full unpickling (arbitrary code execution); off by default.
        kind: the file's kind when the caller has sniffed it already (`kinds.kind_of`).

    Raises:
        CheckpointError: missing, unreadable, not a torch file, truncated or corrupt.
        UnsafeCheckpointError: the file stores Python objects that need full unpickling and trust is off.
    """
    path = Path(path)
    kind = kind or kind_of(path)
    if not kind.needs_torch:  # what this file is and where it goes: kinds, the one table of kinds
        raise CheckpointError(f"{path} is {kind.description}, not a PyTorch checkpoint; "
                              f"{', '.join(f'`{c}`' for c in kind.commands)} read it as it is (in Python: "
                              f"dirac_deploy.open_artifact)")
    if zipfile.is_zipfile(path):
        _check_archive(path)
    try:
        with warnings.catch_warnings():  # torch's warnings (pickle protocol, deprecated storages) are not ours
            warnings.simplefilter("ignore")
            obj = torch.load(path, map_location="cpu", weights_only=not trust)
    except pickle.UnpicklingError as e:
        m = _GLOBAL.search(str(e))
        if m and not trust:
            raise UnsafeCheckpointError(
                f"{path} stores a Python object ({m.group(1)}) that only full unpickling can load, and unpickling "
                f"can run arbitrary code; if you trust where the file came from, re-run with `trust_checkpoint=True`"
            ) from None
        reason = _UNPICKLER.search(str(e))
        if reason and not trust:  # safe loading refused the file for another reason (an opcode, a protocol)
            raise UnsafeCheckpointError(
                f"{path} cannot be read by safe (weights-only) loading: {reason.group(1).strip()[:200]}; only full "
                f"unpickling could load it, and that can run arbitrary code: if you trust where the file came "
                f"from, re-run with `trust_checkpoint=True`") from None
        raise CheckpointError(f"cannot read {path}: truncated or corrupt torch file ({first_line(e)})") from None
    except (RuntimeError, EOFError, ValueError, OSError, AttributeError, ImportError, IndexError, KeyError,
            TypeError, OverflowError, MemoryError, NotImplementedError) as e:
        raise CheckpointError(f"cannot read {path}: truncated or corrupt torch file ({first_line(e)[:300]})") from None
    _check_tensors(obj, path)
    return obj


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

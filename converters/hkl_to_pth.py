"""Convert a released DiracNet v1 hickle file (.hkl) to a .pth that `dirac-deploy fold` reads.

    pip install hickle            # HDF5-based; kept out of dirac-deploy's own dependencies
    python converters/hkl_to_pth.py diracnet-18-0.75-br.hkl diracnet18-075-v1.pth
    dirac-deploy fold diracnet18-075-v1.pth -o plain.pth

Three structures are read, as the v1 notebook loads them:
- `{'params': {...}, 'stats': {...}}` (the unfolded `diracnet-18-0.75-br.hkl`: the notebook does
  `data['params']`, `data['stats']`), the two dicts flat or nested (hickle writes nested dicts as HDF5 groups;
  nested names are joined with dots). Written as the v1 `{'params', 'stats'}` layout.
- one flat dict of arrays with `conv` (a v1 checkpoint whose params and stats were saved together): running
  statistics and `eye...` deltas go to `stats`, everything else to `params`.
- one flat dict with `conv.weight`, `conv.bias`, `group0.block0.conv.weight`, ... (the folded
  `diracnet-18-0.75-br-export.hkl`): written as that flat state_dict, the `v1-folded` layout.
Names are kept: the loader reads the functional spelling (`...alpha`, `...beta`) and the released files'
(`...conv.gamma` for the delta scale, `...conv.beta` for the weight scale). Anything else is refused with one
line naming what was found. The released files themselves could not be fetched from our machines, so this is
tested on .hkl files that hickle writes with their documented names and structures, not on the originals.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


class ConversionError(ValueError):
    """The file's structure is not one of the three above; the message says what was found."""


def _describe(obj) -> str:
    if isinstance(obj, dict):
        keys = sorted(map(str, obj))
        return f"a dict with keys {keys[:6]}{' ...' if len(keys) > 6 else ''}"
    return f"a {type(obj).__name__}"


def flatten(tree, prefix: str = "") -> dict:
    """Nested dicts of arrays -> {dotted name: float32 tensor}; refuses values that are not arrays or numbers."""
    import numpy as np
    import torch

    out = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(flatten(value, f"{name}."))
            continue
        try:
            array = np.asarray(value)
        except Exception:  # anything numpy cannot hold is refused the same way
            array = None
        if array is None or array.dtype.kind not in "fiub":
            raise ConversionError(f"{name} is {_describe(value)}, not an array of numbers")
        out[name] = torch.from_numpy(np.ascontiguousarray(array, dtype=np.float32))
    return out


def split_params_stats(flat: dict) -> dict:
    """Flat name -> array dict -> {'params', 'stats'} of torch tensors (pure; no hickle needed)."""
    tensors = flatten(flat)
    params = {k: v for k, v in tensors.items() if not ("running_" in k or k.startswith("eye"))}
    stats = {k: v for k, v in tensors.items() if k not in params}
    if "conv" not in params:
        raise ConversionError(f"no stem 'conv' among {len(tensors)} arrays (first: {sorted(tensors)[:5]}); "
                              f"not a DiracNet v1 file")
    return {"params": params, "stats": stats}


def convert(obj) -> tuple[dict, str]:
    """(checkpoint to torch.save, what it is) for a loaded hickle object."""
    if not isinstance(obj, dict):
        raise ConversionError(f"expected a dict of arrays, found {_describe(obj)}")
    if isinstance(obj.get("params"), dict) and isinstance(obj.get("stats"), dict):
        params, stats = flatten(obj["params"]), flatten(obj["stats"])
        if "conv" not in params:
            raise ConversionError(f"'params' has no stem 'conv' (first keys: {sorted(params)[:5]}); not a DiracNet "
                                  f"v1 file")
        return {"params": params, "stats": stats}, "v1 {'params', 'stats'}"
    if "params" in obj or "stats" in obj:
        raise ConversionError(f"found {_describe(obj)}: 'params' and 'stats' must both be dicts of arrays")
    flat = flatten(obj)
    if "conv.weight" in flat and any(k.startswith("group0.block0.conv.") for k in flat):
        return flat, "v1 folded state_dict"
    if "conv" in flat:
        return split_params_stats(flat), "v1 params and stats split from one flat dict"
    raise ConversionError(f"found {_describe(obj)}: neither {{'params', 'stats'}}, nor a flat dict with 'conv', "
                          f"nor a folded one with 'conv.weight' and 'group0.block0.conv.weight'")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("hkl", type=Path)
    ap.add_argument("output", type=Path)
    args = ap.parse_args(argv)
    if args.output.resolve() == args.hkl.resolve():
        print("error: output equals input; choose another output path", file=sys.stderr)
        return 1
    try:
        import hickle
    except ImportError:
        print("error: this converter needs hickle: pip install hickle", file=sys.stderr)
        return 1
    import torch

    try:
        checkpoint, kind = convert(hickle.load(str(args.hkl)))
    except (OSError, ValueError, TypeError, KeyError) as e:
        print(f"error: cannot convert {args.hkl}: {' '.join(str(e).split())}", file=sys.stderr)
        return 1
    tmp = args.output.with_name(f".{args.output.name}.tmp")
    try:
        torch.save(checkpoint, tmp)
        tmp.replace(args.output)
    except OSError as e:
        tmp.unlink(missing_ok=True)
        print(f"error: cannot write {args.output}: {e.strerror}", file=sys.stderr)
        return 1
    count = len(checkpoint) if "params" not in checkpoint else (
        f"{len(checkpoint['params'])} params, {len(checkpoint['stats'])} stats")
    print(f"wrote {args.output}: {kind}, {count}{' tensors' if isinstance(count, int) else ''}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

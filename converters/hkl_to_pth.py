"""Convert a released DiracNet v1 hickle file (.hkl) to a .pth that `dirac-deploy fold` reads.

    pip install hickle            # HDF5-based; kept out of dirac-deploy's own dependencies
    python converters/hkl_to_pth.py diracnet-18-0.75-br.hkl diracnet18-075-v1.pth
    dirac-deploy fold diracnet18-075-v1.pth -o plain.pth

The released files store one flat dict of numpy arrays. This writes the v1 `{'params', 'stats'}` layout:
running statistics and `eye...` deltas go to `stats`, everything else to `params`. Names are kept: the loader
reads both the functional-code spelling (`...alpha`, `...beta`) and the released files' (`...conv.gamma` for
the delta scale, `...conv.beta` for the weight scale). The released files themselves could not be fetched
from our machines, so this is tested on .hkl files written by hickle with their documented names, not on the
originals.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def split_params_stats(flat: dict) -> dict:
    """Flat name -> array dict -> {'params', 'stats'} of torch tensors (pure; no hickle needed)."""
    import numpy as np
    import torch

    params, stats = {}, {}
    for name, value in flat.items():
        tensor = torch.from_numpy(np.ascontiguousarray(np.asarray(value, dtype=np.float32)))
        (stats if "running_" in name or name.startswith("eye") else params)[name] = tensor
    if "conv" not in params:
        raise ValueError(f"no stem 'conv' among {len(flat)} arrays (first: {sorted(flat)[:5]}); not a DiracNet v1 file")
    return {"params": params, "stats": stats}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("hkl", type=Path)
    ap.add_argument("output", type=Path)
    args = ap.parse_args()
    if args.output.resolve() == args.hkl.resolve():
        print("error: output equals input", file=sys.stderr)
        return 1
    try:
        import hickle
    except ImportError:
        print("error: this converter needs hickle: pip install hickle", file=sys.stderr)
        return 1
    import torch

    try:
        flat = hickle.load(str(args.hkl))
        checkpoint = split_params_stats(dict(flat))
    except (OSError, ValueError, TypeError) as e:
        print(f"error: cannot convert {args.hkl}: {e}", file=sys.stderr)
        return 1
    tmp = args.output.with_name(f".{args.output.name}.tmp")
    torch.save(checkpoint, tmp)
    tmp.replace(args.output)
    print(f"wrote {args.output}: {len(checkpoint['params'])} params, {len(checkpoint['stats'])} stats")
    return 0


if __name__ == "__main__":
    sys.exit(main())

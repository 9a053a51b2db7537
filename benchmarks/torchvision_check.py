"""The project's ResNet baseline against torchvision's own ResNet-18, where torchvision is installed.

    python benchmarks/torchvision_check.py --device cuda --out benchmarks/results/     # gpu_check.sh runs it

The baseline is written with torchvision's parameter names, so torchvision's state dict loads into it; this
checks that both compute the same logits and times both (eager and CUDA graphs, fp32 and fp16 channels_last,
batch 1 and 128) in interleaved rounds. A speed-up near 1.0 says the bench's ResNet rows stand for the ResNet
users run. Writes <device>-torchvision-resnet18.json.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from dirac_deploy.bench.env import collect_env
from dirac_deploy.bench.formats import NumericFormat
from dirac_deploy.bench.models import Variant
from dirac_deploy.bench.runners import Skip, prepare, sync_for
from dirac_deploy.fileio import atomic_write
from dirac_deploy.models.resnet import resnet
from dirac_deploy.timing import ratio_stats, time_interleaved


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", choices=("cpu", "cuda"), default="cuda")
    ap.add_argument("--batch", default="1,128")
    ap.add_argument("--formats", default="fp32,fp16-cl")
    ap.add_argument("--backends", default="torch,cuda-graph")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "results")
    args = ap.parse_args()
    import torchvision

    torch.manual_seed(0)
    tv = torchvision.models.resnet18(weights=None).eval()
    ours = resnet(18).eval()
    ours.load_state_dict(tv.state_dict())
    x = torch.randn(4, 3, 224, 224, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        diff = float((tv(x) - ours(x)).abs().max())
    doc = {"schema": "dirac-deploy/torchvision-check", "version": 1, "env": collect_env(args.device, torch.get_num_threads()),
           "torchvision": torchvision.__version__, "same_state_dict_max_abs_logit_diff": diff, "rows": []}
    variants = {"torchvision": Variant("torchvision", tv), "ours": Variant("ours", ours)}
    sync = sync_for(args.device)
    for backend in args.backends.split(","):
        for fmt in args.formats.split(","):
            for batch in (int(b) for b in args.batch.split(",")):
                try:
                    calls = {n: prepare(backend, args.device, v, (3, 224, 224), batch, 1, NumericFormat(fmt))
                             for n, v in variants.items()}
                except Skip as e:
                    doc["rows"].append({"backend": backend, "format": fmt, "batch": batch, "status": f"skipped: {e}"})
                    continue
                for call in calls.values():
                    call()
                sync()
                timed = time_interleaved(calls, rounds=args.rounds, iters=30, max_seconds=2.0, sync=sync)
                row = {"backend": backend, "format": fmt, "batch": batch, "status": "ok",
                       "p50_ms": {n: t.latency.p50 for n, t in timed.items()},
                       "speedup_ours_vs_torchvision": ratio_stats(timed["torchvision"], timed["ours"])}
                doc["rows"].append(row)
                print(json.dumps(row), flush=True)
    path = args.out / f"{args.device}-torchvision-resnet18.json"
    atomic_write(path, lambda tmp: tmp.write_text(json.dumps(doc, indent=1) + "\n"))
    print(f"wrote {path} (max |logit diff| with the same weights: {diff:.2e})")


if __name__ == "__main__":
    main()

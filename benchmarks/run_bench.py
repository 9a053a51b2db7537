"""Reproduce the README's benchmark results: run the matrix through the library, write JSON + PNG.

    .venv/bin/python benchmarks/run_bench.py --device cpu --depth 18     # ~20 min on a 2-core VM (torch.compile)
    .venv/bin/python benchmarks/run_bench.py --device cpu --depth 34
    .venv/bin/python benchmarks/run_bench.py --device cuda --depth 18    # on a GPU machine
    # on a GPU machine, every PyTorch format; torch.compile (slow to compile) as a second part merged in:
    python benchmarks/run_bench.py --device cuda --batch 1,8,32,128 --backends torch,cuda-graph,onnxruntime,tensorrt \
        --formats fp32,tf32,fp16,bf16,fp16-cl,bf16-cl
    python benchmarks/run_bench.py --device cuda --batch 1,128 --backends torch-compile --formats fp32,fp16-cl \
        --merge-into benchmarks/results/cuda-diracnet18.json      # benchmarks/gpu_check.sh runs both
    # low precision against fp32 ONNX Runtime (the fp32 matrix reduced to ONNX Runtime):
    .venv/bin/python benchmarks/run_bench.py --depth 18 --batch 1,8 --backends onnxruntime --precision all
    .venv/bin/python benchmarks/run_bench.py --model noisy --batch 1,8 --backends onnxruntime --precision all
    .venv/bin/python benchmarks/render_tables.py                         # the README tables from results/

Results go to benchmarks/results/<device>-diracnet<depth>.{json,png}. Run on an otherwise idle machine:
the numbers are only comparable within one file (same run, same machine).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from dirac_deploy.bench.report import write_json, write_plot
from dirac_deploy.bench.run import BenchConfig, BenchResult, run_benchmark

RESULTS = Path(__file__).resolve().parent / "results"


def merged(earlier: dict, result: BenchResult) -> BenchResult:
    """One result from two runs of the same model on the same device: records together, the earlier env with
    each part's settings under `parts` and the later run's practical peaks added."""
    env = earlier["env"]
    for key in ("model", "device"):
        if env.get(key) != result.env.get(key):
            raise SystemExit(f"--merge-into: {key} differs ({env.get(key)!r} there, {result.env.get(key)!r} here)")
    part_keys = ("formats", "rounds", "iters", "max_seconds_per_variant", "git_sha", "git_dirty", "load_average")
    parts = env.pop("parts", None) or [{k: env.get(k) for k in part_keys} | {
        "backends": sorted({r["backend"] for r in earlier["records"]})}]
    env["parts"] = [*parts, {k: result.env.get(k) for k in part_keys} | {
        "backends": sorted({r["backend"] for r in result.records})}]
    env["peak"] = {**env.get("peak", {}), **result.env.get("peak", {})}
    env["formats"] = list(dict.fromkeys([*env.get("formats", ["fp32"]), *result.env.get("formats", [])]))
    for fmt, agreement in result.env.get("format_agreement", {}).items():
        env.setdefault("format_agreement", {}).setdefault(fmt, agreement)
    return BenchResult(env, earlier["records"] + result.records)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    ap.add_argument("--depth", type=int, choices=(18, 34), default=18)
    ap.add_argument("--batch", default="1,8,32")
    ap.add_argument("--iters", type=int, default=30)
    ap.add_argument("--max-seconds", type=float, default=3.0)
    ap.add_argument("--rounds", type=int, default=5, help="interleaved rounds (ratios are per-round medians)")
    ap.add_argument("--backends", help="comma-separated subset (default: every backend this machine has)")
    ap.add_argument("--model", help="a checkpoint or plain.pth, or 'digits' / 'noisy' for the embedded models "
                                    "[default: ImageNet DiracNet-<depth>, random weights]")
    ap.add_argument("--precision", default="", help="low-precision rows: comma-separated int8,fp16,bf16,fp32 or all")
    ap.add_argument("--formats", default="fp32", help="with --device cuda: PyTorch numeric formats, comma-separated "
                                                        "(fp32, tf32, fp16, bf16, each also -cl for channels_last)")
    ap.add_argument("--merge-into", type=Path, help="add this run's records to an earlier run's JSON (same model and "
                                                     "device), e.g. a second part with other backends")
    ap.add_argument("--git-sha", help="the commit the tree was copied from, recorded when git cannot tell (a tree "
                                      "copied to another machine without .git)")
    ap.add_argument("--out", type=Path, default=RESULTS)
    args = ap.parse_args()
    from dirac_deploy import data

    model = data.EMBEDDED[args.model]() if args.model in data.EMBEDDED else (Path(args.model) if args.model else None)
    precisions = ("int8", "fp16", "bf16", "fp32") if args.precision == "all" else tuple(
        p for p in args.precision.split(",") if p)
    cfg = BenchConfig(model_path=model, precisions=precisions, depth=args.depth, device=args.device, batches=tuple(int(b) for b in args.batch.split(",")),
                      iters=args.iters, max_seconds=args.max_seconds, rounds=args.rounds,
                      backends=tuple(args.backends.split(",")) if args.backends else None,
                      formats=tuple(args.formats.split(",")))
    result = run_benchmark(cfg, lambda msg: print(msg, file=sys.stderr, flush=True))
    if result.env.get("git_sha") is None and args.git_sha:
        result.env.update(git_sha=args.git_sha, git_sha_from="--git-sha: the tree was run without its .git")
    if args.merge_into:
        result = merged(json.loads(args.merge_into.read_text()), result)
    name = args.model if args.model in data.EMBEDDED else (Path(args.model).stem if args.model else f"diracnet{args.depth}")
    stem = args.out / f"{args.device}-{'lowp-' if precisions else ''}{name}"
    write_json(stem.with_suffix(".json"), result.to_json())
    env = result.env
    hardware = env.get("gpu", {}).get("name") or env["cpu"]
    write_plot(stem.with_suffix(".png"), result.records, f"{env['model']} — {args.device} ({hardware}, {env['threads']} threads)")
    print(f"wrote {stem}.json and {stem}.png")


if __name__ == "__main__":
    main()

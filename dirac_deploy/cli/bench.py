"""`dirac-deploy bench`."""

from __future__ import annotations

from pathlib import Path

import click
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from ..bench.report import write_json, write_plot
from ..bench.run import MAX_BENCH_BATCH, BenchConfig, run_benchmark
from ..bench.runners import ALL_BACKENDS
from ..errors import DiracDeployError
from ..fileio import check_output_path
from . import main
from .options import checkpoint_options, load_options
from .render import console, print_bench


def _ints(ctx, param, value):
    try:
        values = tuple(int(v) for v in value.split(","))
    except ValueError:
        values = ()
    if not values or min(values) < 1 or max(values) > MAX_BENCH_BATCH:
        raise click.BadParameter(f"expected comma-separated integers in 1..{MAX_BENCH_BATCH} such as 1,8,32, got "
                                 f"{value[:80]!r}")
    return values


def _backends(ctx, param, value):
    if value is None:
        return None
    names = tuple(v.strip() for v in value.split(",") if v.strip())
    bad = [n for n in names if n not in ALL_BACKENDS]
    if bad or not names:
        raise click.BadParameter(f"unknown backend(s) {', '.join(bad) or '(none)'}; choose from {', '.join(ALL_BACKENDS)}")
    return names


@main.command()
@click.argument("model", required=False, type=click.Path(path_type=Path))
@click.option("--device", type=click.Choice(["cpu", "cuda"]), default="cpu", show_default=True)
@click.option("--depth", type=click.Choice(["18", "34"]), default="18", show_default=True,
              help="Depth of the default ImageNet DiracNet (and its ResNet) when no MODEL is given.")
@click.option("--batch", "batches", default="1,8,32", show_default=True, callback=_ints, help="Batch sizes.")
@click.option("--backends", callback=_backends,
              help=f"Comma-separated subset of {', '.join(ALL_BACKENDS)} [default: all that apply to the device].")
@click.option("--threads", type=click.IntRange(min=1), help="CPU threads for torch and ONNX Runtime [default: all cores].")
@click.option("--iters", type=click.IntRange(min=5), default=30, show_default=True,
              help="Timed calls per record (fewer if a record passes --max-seconds).")
@click.option("--warmup", type=click.IntRange(min=1), default=3, show_default=True, help="Untimed calls first.")
@click.option("--max-seconds", type=click.FloatRange(min=0.1), default=3.0, show_default=True,
              help="Stop timing a record after this long once 5 calls were timed.")
@click.option("--tf32/--no-tf32", default=False, show_default=True, help="Allow TF32 on CUDA (off: strict fp32).")
@click.option("--json", "json_path", type=click.Path(path_type=Path), default=Path("bench.json"), show_default=True)
@click.option("--plot", "plot_path", type=click.Path(path_type=Path), default=Path("bench.png"), show_default=True)
@checkpoint_options
def bench(model, device, depth, batches, backends, threads, iters, warmup, max_seconds, tf32, json_path, plot_path,
          **opts):
    """Benchmark folded vs unfolded vs ResNet, per backend and batch size, in one run on one device.

    Without MODEL it builds ImageNet DiracNet-18 (--depth 34 for 34) with random weights and calibrated batch
    norm. MODEL may be a checkpoint (all three variants) or a plain.pth (no unfolded variant). Writes a JSON
    file with one record per (variant, backend, device, batch) and a PNG plot; prints the headline ratios.
    """
    if json_path.resolve() == plot_path.resolve():
        raise click.UsageError(f"--json and --plot name the same file ({json_path}); give two paths")
    for out in (json_path, plot_path):
        check_output_path(out, *([model] if model else []))
    cfg = BenchConfig(model_path=model, depth=int(depth), device=device, batches=batches, backends=backends,
                      threads=threads, warmup=warmup, iters=iters, max_seconds=max_seconds, tf32=tf32,
                      options=load_options(**opts))
    n_backends = len(backends or (ALL_BACKENDS if device == "cuda" else ("torch", "onnxruntime", "onnxruntime-noopt")))
    total = 1 + n_backends * (1 + len(cfg.variants) * len(batches))
    with Progress(TextColumn("{task.description:<44}"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
                  TimeElapsedColumn(), console=console(), transient=True) as bar:
        task = bar.add_task("benchmark", total=total)

        def progress(msg: str) -> None:
            bar.update(task, description=msg, advance=1)

        try:
            result = run_benchmark(cfg, progress)
        except ValueError as e:
            raise DiracDeployError(str(e)) from None
    write_json(json_path, result.to_json())
    env = result.env
    write_plot(plot_path, result.records, f"{env['model']} — {device} ({env.get('gpu', {}).get('name') or env['cpu']}, "
                                          f"{env['threads']} threads)")
    out = console()
    print_bench(out, result)
    out.print(f"wrote {json_path} and {plot_path}")

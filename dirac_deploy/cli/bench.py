"""`dirac-deploy bench`."""

from __future__ import annotations

import json
from pathlib import Path

import click
from rich.markup import escape
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.text import Text

from ..bench import ALL_BACKENDS, MAX_BENCH_BATCH
from .options import checkpoint_options, load_options
from .render import console, err_console
from .tables import print_bench


def _ints(_ctx, _param, value):
    try:
        values = tuple(int(v) for v in value.split(","))
    except ValueError:
        values = ()
    if not values or min(values) < 1 or max(values) > MAX_BENCH_BATCH:
        raise click.BadParameter(f"expected comma-separated integers in 1..{MAX_BENCH_BATCH} such as 1,8,32, got "
                                 f"{value[:80]!r}")
    return values


def _precisions(_ctx, _param, value):
    from ..quantize import PRECISIONS

    if not value:
        return ()
    names = PRECISIONS if value == "all" else tuple(v.strip() for v in value.split(",") if v.strip())
    bad = [n for n in names if n not in PRECISIONS]
    if bad:
        raise click.BadParameter(f"unknown precision(s) {', '.join(bad)}; choose from {', '.join(PRECISIONS)} or all")
    return names


def _formats(_ctx, _param, value):
    from ..bench.formats import FORMATS

    names = tuple(v.strip() for v in value.split(",") if v.strip())
    bad = [n for n in names if n not in FORMATS]
    if bad or not names:
        raise click.BadParameter(f"unknown format(s) {', '.join(bad) or '(none)'}; choose from {', '.join(FORMATS)}")
    return names


def _backends(_ctx, _param, value):
    if value is None:
        return None
    names = tuple(v.strip() for v in value.split(",") if v.strip())
    bad = [n for n in names if n not in ALL_BACKENDS]
    if bad or not names:
        raise click.BadParameter(f"unknown backend(s) {', '.join(bad) or '(none)'}; choose from {', '.join(ALL_BACKENDS)}")
    return names


@click.command()
@click.argument("model", required=False, type=click.Path(path_type=Path))
@click.option("--device", type=click.Choice(["cpu", "cuda"]), default="cpu", show_default=True)
@click.option("--depth", type=click.Choice(["18", "34"]), default="18", show_default=True,
              help="Depth of the default ImageNet DiracNet (and its ResNet) when no MODEL is given.")
@click.option("--batch", "batches", default="1,8,32", show_default=True, callback=_ints, help="Batch sizes.")
@click.option("--backends", callback=_backends,
              help=f"Comma-separated subset of {', '.join(ALL_BACKENDS)} [default: all that apply to the device].")
@click.option("--threads", type=click.IntRange(min=1), help="CPU threads for torch and ONNX Runtime [default: all cores].")
@click.option("--rounds", type=click.IntRange(1, 100), default=5, show_default=True,
              help="Interleaved rounds: each times every variant once more, in a rotated order; ratios are the "
                   "median of the per-round ratios.")
@click.option("--iters", type=click.IntRange(min=1), default=30, show_default=True,
              help="Timed calls per variant and row over all rounds (fewer if --max-seconds runs out).")
@click.option("--warmup", type=click.IntRange(min=1), default=3, show_default=True, help="Untimed calls first.")
@click.option("--max-seconds", type=click.FloatRange(min=0.1), default=3.0, show_default=True,
              help="Stop timing a record after this long once 5 calls were timed.")
@click.option("--precision", "precisions", callback=_precisions, default="",
              help="Also time low-precision artifacts of the folded chain (comma-separated: int8, fp16, bf16, fp32 "
                   "for OpenVINO fp32, or all) against fp32 ONNX Runtime in one run, with their agreement and SQNR.")
@click.option("--calib", default="auto", show_default=True,
              help="With --precision: calibration data (as `quantize --calib`; auto: the embedded data of an "
                   "embedded model, else random:32).")
@click.option("--eval", "evaluation", default="auto", show_default=True,
              help="With --precision: the images agreement and SQNR are measured on (auto: embedded, else random:64).")
@click.option("--tf32/--no-tf32", default=False, show_default=True,
              help="Allow TF32 in the fp32 rows on CUDA (off: strict fp32; the tf32 format always allows it).")
@click.option("--formats", "formats", default="fp32", show_default=True, callback=_formats,
              help="With --device cuda: numeric formats of the PyTorch backends, comma-separated: fp32, tf32, fp16, "
                   "bf16, each also with -cl (channels_last), e.g. fp32,tf32,fp16,bf16-cl. Each non-fp32 format's "
                   "top-1 agreement and logit SQNR against fp32 are recorded.")
@click.option("--out-dir", type=click.Path(path_type=Path, file_okay=False), default=Path("bench-out"),
              show_default=True, help="Where bench.json and bench.png go (created if missing).")
@click.option("--json", "json_path", type=click.Path(path_type=Path),
              help="Records as JSON here instead ('-': stdout; the table then goes to stderr) [default: "
                   "OUT_DIR/bench.json].")
@click.option("--plot", "plot_path", type=click.Path(path_type=Path),
              help="Latency and speed-up plot here instead (needs matplotlib: the plot extra) [default: "
                   "OUT_DIR/bench.png].")
@click.option("--no-plot", "no_plot", is_flag=True, help="Write no plot.")
@checkpoint_options
def bench(model, device, depth, batches, backends, threads, rounds, iters, warmup, max_seconds, precisions, calib,
          evaluation, tf32, formats, out_dir, json_path, plot_path, no_plot, **opts):
    """Benchmark the folded chain against what a user could run instead, per backend and batch, in one run.

    Variants: folded (this project), unfolded-as-trained (the DiracNet as trained; op-for-op ONNX),
    unfolded-exported (torch.onnx.export defaults + onnxsim: what a user gets without us), resnet (a ResNet of
    matching size, BN folded), and for DiracNet v1 folded-absorbed (the other fold form). torch-compile is a
    backend (freezing on), so "unfolded compiled" is its unfolded-as-trained row.

    Without MODEL it builds ImageNet DiracNet-18 (--depth 34 for 34) with random weights and calibrated batch
    norm. MODEL may be a checkpoint or a plain.pth (no unfolded variants). Variants are timed in interleaved
    rounds; each speed-up is the median of per-round ratios with its interquartile range, and noisy rows are
    flagged. With --precision, low-precision artifacts built as `quantize` builds them are timed against
    fp32 ONNX Runtime of the folded chain, with their top-1 agreement and logit SQNR. Writes OUT_DIR/bench.json
    (one record per variant, backend, device and batch; schema in docs/reports.md) and OUT_DIR/bench.png.
    """
    from ..bench.report import write_json, write_plot
    from ..bench.run import BenchConfig, run_benchmark
    from ..errors import MissingDependencyError
    from ..fileio import check_not_input, check_output_path, transaction

    json_path = json_path or out_dir / "bench.json"
    plot_path = None if no_plot else (plot_path or out_dir / "bench.png")
    to_stdout = str(json_path) == "-"
    if not to_stdout and plot_path is not None and json_path.resolve() == plot_path.resolve():
        raise click.UsageError(f"--json and --plot name the same file ({json_path}); give two paths")
    outputs = ([] if to_stdout else [json_path]) + ([] if plot_path is None else [plot_path])
    inputs = [p for p in (model, calib, evaluation) if p and Path(p).exists()]
    in_out_dir = any(o.parent == out_dir for o in outputs)
    if in_out_dir and not out_dir.exists() and not out_dir.resolve().parent.is_dir():
        raise click.UsageError(f"--out-dir {out_dir}: its parent directory does not exist")
    for out in outputs:
        check_not_input(out, *inputs)
        if not (in_out_dir and out.parent == out_dir and not out_dir.exists()):  # out_dir is made before writing
            check_output_path(out, *inputs)
    cfg = BenchConfig(model_path=model, depth=int(depth), device=device, batches=batches, backends=backends,
                      threads=threads, rounds=rounds, warmup=warmup, iters=iters, max_seconds=max_seconds,
                      tf32=tf32, formats=formats, options=load_options(**opts), precisions=precisions, calib=calib,
                      evaluation=evaluation)
    err = err_console()
    if not err.is_terminal:  # a log, not a screen: one line per step, and no bar's blank line left behind
        done, total = [0], ["?"]

        def step_line(msg: str) -> None:
            done[0] += 1
            err.print(Text(f"[{done[0]}/{total[0]}] {msg}", style="dim"))

        result = run_benchmark(cfg, step_line, on_plan=lambda steps: total.__setitem__(0, str(len(steps))))
    else:
        with Progress(TextColumn("{task.description:<44}"), BarColumn(),
                      TextColumn("{task.completed}/{task.total}"), TimeElapsedColumn(), console=err,
                      transient=True) as bar:
            task = bar.add_task("benchmark", total=None)  # the step count comes once the models are built

            def progress(msg: str) -> None:
                bar.update(task, description=escape(msg), advance=1)

            result = run_benchmark(cfg, progress, on_plan=lambda steps: bar.update(task, total=len(steps)))
    if in_out_dir:
        out_dir.mkdir(exist_ok=True)
    out = console() if not to_stdout else err_console()
    wrote = [] if to_stdout else [str(json_path)]
    with transaction():  # the JSON and the plot land together or not at all
        if to_stdout:
            click.echo(json.dumps(result.to_json(), indent=1))
        else:
            write_json(json_path, result.to_json())
        if plot_path is not None:
            env = result.env
            title = (f"{env['model']} — {device} ({env.get('gpu', {}).get('name') or env['cpu']}, "
                     f"{env['threads']} threads)")
            try:
                wrote.append(str(write_plot(plot_path, result.records, title)))
            except MissingDependencyError as e:
                out.print(Text(f"plot skipped: {e}"))
    print_bench(out, result)
    if wrote:
        out.print(Text(f"wrote {' and '.join(wrote)}"))

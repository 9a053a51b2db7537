"""Terminal rendering of library reports (rich), the global -q/-v settings, and --json output."""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path

import click
from rich import box
from rich.console import Console
from rich.markup import escape
from rich.table import Table
from rich.text import Text


@dataclass(frozen=True)
class Settings:
    quiet: bool = False
    verbose: int = 0


def settings() -> Settings:
    ctx = click.get_current_context(silent=True)
    obj = ctx.find_object(Settings) if ctx is not None else None
    return obj or Settings()


def console() -> Console:
    """A console for the current stdout; wide when piped, so logs and captured output are not wrapped.
    Quiet (-q) prints nothing here."""
    return Console(highlight=False, width=None if sys.stdout.isatty() else 160, quiet=settings().quiet)


def err_console() -> Console:
    """Progress and spinners go to stderr, so stdout stays the command's result (pipeable, --json)."""
    return Console(stderr=True, highlight=False, width=None if sys.stderr.isatty() else 160, quiet=settings().quiet)


def progress_status(first: str):
    """A spinner on stderr for long library calls, and a `progress(step)` callback that updates it."""
    status = err_console().status(escape(first))  # messages name user files: text, never markup

    def progress(step: str) -> None:
        status.update(f"{escape(step)} ...")

    return status, progress


def json_option(f):
    return click.option("--json", "json_path", type=click.Path(path_type=Path),
                        help="Also write the report as JSON to this file ('-': stdout, and no table). Schemas: "
                             "docs/reports.md.")(f)


def outputs_with_report(json_path: Path | None):
    """The context a command runs its library call and `emit_json` in: a file transaction when the report goes
    to a file (artifacts and report land together or not at all), else nothing."""
    import contextlib

    if json_path is None or str(json_path) == "-":
        return contextlib.nullcontext()
    from ..fileio import transaction

    return transaction()


def check_json_path(json_path: Path | None, *others) -> None:
    """Refuse a --json path that cannot be written, or that is an input or another output, before any work
    (a report that fails after the artifact was written would break all-or-nothing)."""
    if json_path is None or str(json_path) == "-":
        return
    from ..fileio import check_output_path

    check_output_path(json_path, *[o for o in others if o is not None])


def emit_json(json_path: Path | None, payload: dict) -> bool:
    """Write `payload` to `json_path` ('-' is stdout); True when it went to stdout (print nothing else)."""
    if json_path is None:
        return False
    text = json.dumps(payload, indent=1, default=str) + "\n"
    if str(json_path) == "-":
        click.echo(text, nl=False)
        return True
    from ..fileio import atomic_write, check_output_path

    atomic_write(check_output_path(json_path), lambda tmp: tmp.write_text(text))
    return False


def human(n: float, unit: str = "") -> str:
    for factor, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(n) >= factor:
            return f"{n / factor:.2f} {suffix}{unit}"
    return f"{n:g} {unit}".strip()


def kv_table(title: str, rows: list[tuple[str, str | Text]]) -> Table:
    """Two columns, key and value. Values are text, never markup: they hold paths, file metadata and notes
    such as `[relu(x), 0]` that rich would otherwise read as tags (pass a `Text` to style one)."""
    table = Table(title=Text(title), title_justify="left", show_header=False, box=None, pad_edge=False)
    table.add_column(style="bold")
    table.add_column()
    for k, v in rows:
        table.add_row(Text(k), v if isinstance(v, Text) else Text(str(v)))
    return table


def _source(text: str) -> Text:
    if not text or text == "checkpoint":
        return Text("")
    return Text(f" ({text})", style="yellow" if text.startswith("assumed") else "dim")


def input_rows(shape, mean, std, provenance: dict) -> list[tuple[str, Text]]:
    """Input size and normalization, each marked with where it came from (assumed values stand out)."""
    c, h, w = shape
    return [("input", Text(f"{c}x{h}x{w}") + _source(provenance.get("input_size", ""))),
            ("normalization", Text(f"mean {list(mean or [])}, std {list(std or [])}")
             + _source(provenance.get("normalization", "")))]


def inspect_rows(report) -> list[tuple[str, str]]:
    spec = report.spec
    rows = [("source", f"{report.path}  (sha256 {report.sha256[:12]})"),
            ("layout", f"{report.layout}: {report.layout_description}"),
            ("architecture", spec.name), *spec.summary_rows(folded=report.folded_source),
            *input_rows((spec.in_channels, spec.input_size, spec.input_size), spec.mean, spec.std,
                        report.provenance)]
    if report.folded_source:
        rows.append(("state", "already folded (plain chain)"))
    for note in report.notes:
        rows.append(("note", note))
    return rows


def _fmt(v, spec=".1f", suffix=""):
    return "-" if v is None else f"{v:{spec}}{suffix}"


def _ms(v) -> str:
    return "-" if v is None else f"{v:.2f}" if v < 100 else f"{v:.1f}" if v < 1000 else f"{v:.0f}"


def _ratio(r, iqr: bool = True) -> str:
    if r is None:
        return "-"
    return f"{r.median:.2f}x ({r.iqr[0]:.2f}-{r.iqr[1]:.2f})" if iqr else f"{r.median:.2f}x"


_SHORT = {"unfolded-as-trained": "as trained", "unfolded-exported": "exported"}
WIDE = 140  # from this console width on, the tables show every column and every interquartile range


def _table(title: str) -> Table:
    # no vertical rules: at 80-100 columns every character goes to the numbers
    return Table(title=Text(title), title_justify="left", box=box.SIMPLE_HEAD, pad_edge=False,
                 collapse_padding=True, show_edge=False)


def print_bench(out: Console, result) -> None:
    """The headline table (ratios within one run), the variants, the practical peaks, warnings, skip reasons.

    The headline column, the speed-up over the best alternative with its IQR, never wraps; below `WIDE`
    columns the secondary ratios lose their IQR and the GFLOP/s columns go (all of it is in the JSON)."""
    from ..bench.report import headline_rows, skipped

    env = result.env
    wide = out.width >= WIDE
    rows = headline_rows(result.records)
    v1 = any(r.vs_absorbed for r in rows)
    table = _table(f"{env['model']} on {env['device']}: p50 latency (ms) and speed-ups t_other / t_folded (> 1: "
                   f"folded is faster; median of {env.get('rounds', 1)} interleaved rounds, IQR in brackets)")
    cols = ["backend", "batch", "folded ms", "vs best alternative", "which", "its ms", "vs as-trained", "vs ResNet"]
    cols += (["absorbed form"] if v1 else []) + (["GFLOP/s", "of peak"] if wide else []) + [""]
    for col in cols:
        table.add_column(col, justify="left" if col in ("backend", "which", "") else "right",
                         no_wrap=col in ("backend", "vs best alternative", "which", "folded ms"))
    for r in rows:
        best = _SHORT.get(r.best_alternative.against, r.best_alternative.against) if r.best_alternative else "-"
        cells = [r.backend, str(r.batch), _ms(r.folded), _ratio(r.best_alternative), best, _ms(r.best_alternative_ms), _ratio(r.vs_as_trained, wide), _ratio(r.vs_resnet, wide)]
        if v1:
            cells.append(_ratio(r.vs_absorbed, wide))
        if wide:
            cells += [_fmt(r.folded_gflops, ".0f"),
                      _fmt(r.folded_peak_fraction and 100 * r.folded_peak_fraction, ".0f", "%")]
        cells.append("[yellow]noisy[/yellow]" if r.warnings else "")
        table.add_row(*cells)
    out.print(table)
    out.print(Text("which: the fastest alternative on that backend (as trained: the unfolded DiracNet; exported: "
                   "torch.onnx.export defaults + onnxsim)", style="dim"))
    for name, v in env.get("variants", {}).items():
        if v.get("missing"):
            out.print(Text(f"{name}: {v['missing']}", style="dim"))
        else:
            exp = f", ONNX in {v['export_s']:.1f} s" if v.get("export_s") else ""
            out.print(Text(f"{name}: {v['description']} ({v['params']:,} parameters, {human(v['flops'])}FLOPs{exp})",
                           style="dim"))
    peaks = ", ".join(f"{b} {p['gflops']:.0f} GFLOP/s" for b, p in env["peak"].items() if p["gflops"])
    out.print(f"practical peak (conv3x3 256->256, 56x56, batch 8): {peaks or 'n/a'}")
    features = env.get("cpu_features", {}).get("summary")
    if features:
        out.print(Text(f"CPU: {env.get('cpu', '?')} ({features}), {env.get('threads')} threads", style="dim"))
    noisy = list(dict.fromkeys(w for r in rows for w in r.warnings))
    for w in noisy[:10]:
        out.print(f"[yellow]noisy:[/yellow] {escape(w)}")
    if len(noisy) > 10:
        out.print(f"[yellow]noisy:[/yellow] ... and {len(noisy) - 10} more (all in the JSON)")
    for key, status in skipped([r for r in result.records if not r.get("lowp")]).items():
        out.print(Text(f"{key}: {status}", style="dim"))
    _print_best(out, result)
    _print_lowp(out, result)


def _print_best(out: Console, result) -> None:
    """Per numeric format and batch, the fastest folded run against the fastest alternative, whatever their
    backends, and each format's agreement with fp32. Printed when there is more than one format or backend."""
    from ..bench.report import best_rows

    rows = best_rows(result.records)
    if len({(r.format, r.batch) for r in rows}) == len({r.batch for r in rows}) and len(
            {r["backend"] for r in result.records if r["status"] == "ok" and not r.get("lowp")}) < 2:
        return
    table = _table("Fastest of each: the folded chain on its best backend vs the best alternative on its best "
                   "(p50 ms; a ratio of p50s across backends)")
    for col in ("format", "batch", "folded ms", "on", "speed-up", "best alternative", "its ms", "ResNet ms"):
        table.add_column(col, justify="left" if col in ("format", "on", "best alternative") else "right",
                         no_wrap=col in ("format", "speed-up"))
    for r in rows:
        alt = r.alternative or "-"
        for long, short in _SHORT.items():
            alt = alt.replace(long, short)
        table.add_row(r.format, str(r.batch), _ms(r.folded_ms), r.folded_backend,
                      "-" if r.speedup is None else f"{r.speedup:.2f}x", alt, _ms(r.alternative_ms), _ms(r.resnet_ms))
    out.print(table)
    for fmt, per_variant in result.env.get("format_agreement", {}).items():
        parts = [f"{_SHORT.get(v, v)} {100 * a['top1_agreement']:.0f}% / "
                 f"{'exact' if a['logit_sqnr_db'] is None else format(a['logit_sqnr_db'], '.0f') + ' dB'}"
                 for v, a in per_variant.items()]
        out.print(Text(f"{fmt} vs fp32 (top-1 agreement / logit SQNR, {next(iter(per_variant.values()))['images']} "
                       f"images): {', '.join(parts)}", style="dim"))


def _print_lowp(out: Console, result) -> None:
    from ..bench.report import lowp_rows

    rows = lowp_rows(result.records)
    info = result.env.get("lowp")
    if not rows:
        if info and info.get("status", "ok") != "ok":
            out.print(Text(f"low precision: {info['status']}", style="dim"))
        return
    table = _table("Low precision: p50 latency (ms); speed-up = t_fp32_ort / t_artifact (> 1: faster; median of "
                   "per-round ratios, IQR); agreement, logit SQNR and accuracy against fp32 on the eval images")
    for col in ("artifact", "batch", "ms", "speed-up vs fp32 ORT", "agreement", "SQNR dB", "accuracy", ""):
        table.add_column(col, justify="left" if col in ("artifact", "") else "right",
                         no_wrap=col in ("artifact", "speed-up vs fp32 ORT"))
    skipped: dict[str, str] = {}
    fp32_accuracy = None
    for r in rows:
        q = r.quality or {}
        speed = "reference" if r.name == "fp32-onnxruntime" else _ratio(r.speedup_vs_fp32_ort)
        fp32_accuracy = q.get("accuracy_fp32", fp32_accuracy)
        acc = "-" if q.get("accuracy") is None else f"{100 * q['accuracy']:.2f}%"
        if r.status != "ok":
            skipped[r.name] = r.status
            flag = r.status.split(":")[0]
        else:
            flag = "[yellow]noisy[/yellow]" if r.warnings else ""
        table.add_row(r.name, str(r.batch), _ms(r.ms), speed,
                      "-" if q.get("agreement") is None else f"{100 * q['agreement']:.2f}%",
                      _fmt(q.get("logit_sqnr_db"), ".1f"), acc, flag)
    out.print(table)
    if fp32_accuracy is not None:
        out.print(Text(f"fp32 accuracy on the eval images: {100 * fp32_accuracy:.2f}%", style="dim"))
    for name, status in skipped.items():
        out.print(Text(f"{name}: {status}", style="dim"))
    if info:
        out.print(Text(f"calibration: {info['calibration']}; evaluation: {info['evaluation']}", style="dim"))

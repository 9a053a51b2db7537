"""Terminal rendering of library reports (rich)."""

from __future__ import annotations

import sys

from rich.console import Console
from rich.table import Table


def console() -> Console:
    """A console for the current stdout; wide when piped, so logs and captured output are not wrapped."""
    return Console(highlight=False, width=None if sys.stdout.isatty() else 160)


def err_console() -> Console:
    """Progress and spinners go to stderr, so stdout stays the command's result (pipeable, --json)."""
    return Console(stderr=True, highlight=False, width=None if sys.stderr.isatty() else 160)


def human(n: float, unit: str = "") -> str:
    for factor, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(n) >= factor:
            return f"{n / factor:.2f} {suffix}{unit}"
    return f"{n:g} {unit}".strip()


def kv_table(title: str, rows: list[tuple[str, str]]) -> Table:
    table = Table(title=title, title_justify="left", show_header=False, box=None, pad_edge=False)
    table.add_column(style="bold")
    table.add_column()
    for k, v in rows:
        table.add_row(k, v)
    return table


def inspect_rows(report) -> list[tuple[str, str]]:
    spec = report.spec
    rows = [("source", f"{report.path}  (sha256 {report.sha256[:12]})"),
            ("layout", f"{report.layout}: {report.layout_description}"),
            ("architecture", spec.name), *spec.summary_rows(folded=report.folded_source),
            ("input", f"{spec.in_channels}x{spec.input_size}x{spec.input_size}, mean {list(spec.mean)}, std {list(spec.std)}")]
    if report.folded_source:
        rows.append(("state", "already folded (plain chain)"))
    for note in report.notes:
        rows.append(("note", note))
    return rows


def _fmt(v, spec=".1f", suffix=""):
    return "-" if v is None else f"{v:{spec}}{suffix}"


def print_bench(out: Console, result) -> None:
    """The headline table (ratios within one run), the practical peaks and the skip reasons."""
    from ..bench.report import headline_rows, skipped

    env = result.env
    table = Table(title=f"{env['model']} on {env['device']}: p50 latency (ms); speed-up = t_other / t_folded",
                  title_justify="left")
    for col in ("backend", "batch", "folded", "unfolded", "resnet", "folded vs unfolded", "folded vs resnet",
                "folded GFLOP/s", "of peak"):
        table.add_column(col, justify="left" if col == "backend" else "right")
    for r in headline_rows(result.records):
        table.add_row(r.backend, str(r.batch), _fmt(r.folded, ".2f"), _fmt(r.unfolded, ".2f"), _fmt(r.resnet, ".2f"),
                      _fmt(r.speedup_vs_unfolded, ".2f", "x"), _fmt(r.speedup_vs_resnet, ".2f", "x"),
                      _fmt(r.folded_gflops, ".0f"),
                      _fmt(r.folded_peak_fraction and 100 * r.folded_peak_fraction, ".0f", "%"))
    out.print(table)
    peaks = ", ".join(f"{b} {p['gflops']:.0f} GFLOP/s" for b, p in env["peak"].items() if p["gflops"])
    out.print(f"practical peak (conv3x3 256->256, 56x56, batch 8): {peaks or 'n/a'}")
    for key, status in skipped(result.records).items():
        out.print(f"[dim]{key}: {status}[/dim]")

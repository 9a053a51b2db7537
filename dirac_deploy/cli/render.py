"""Terminal rendering of library reports (rich)."""

from __future__ import annotations

import sys

from rich.console import Console
from rich.table import Table


def console() -> Console:
    """A console for the current stdout; wide when piped, so logs and captured output are not wrapped."""
    return Console(highlight=False, width=None if sys.stdout.isatty() else 160)


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
            ("architecture", spec.name),
            ("groups", ", ".join(f"{n} x {w}ch" for n, w in zip(spec.convs_per_group, spec.widths))),
            ("scales", "alpha/beta per channel" if spec.per_channel_scales else "alpha/beta scalar"),
            ("input", f"{spec.in_channels}x{spec.input_size}x{spec.input_size}, mean {list(spec.mean)}, std {list(spec.std)}")]
    if report.folded_source:
        rows.append(("state", "already folded (plain chain)"))
    else:
        rows.append(("BN eps", f"{spec.bn_eps:g}"))
    for note in report.notes:
        rows.append(("note", note))
    return rows

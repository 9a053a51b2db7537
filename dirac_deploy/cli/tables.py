"""The CLI's tables of numbers: `fitted_table` (numbers never cut at any width) and the bench, quantize and
`inspect --layers` tables built on it. Library reports in, rich tables out; no library call here."""

from __future__ import annotations

import io
import textwrap
from dataclasses import dataclass

from rich import box
from rich.console import Console
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from .render import human
from .wording import worded


def _fmt(v, spec=".1f", suffix=""):
    return "-" if v is None else f"{v:{spec}}{suffix}"


def _ms(v) -> str:
    return "-" if v is None else f"{v:.2f}" if v < 100 else f"{v:.1f}" if v < 1000 else f"{v:.0f}"


def _ratio(r, iqr: bool = True) -> str:
    """A median of per-round ratios, '~' in front when its interquartile range crosses 1 (no clear winner)."""
    if r is None:
        return "-"
    mark = "~" if r.iqr and r.iqr[0] < 1.0 < r.iqr[1] else ""
    return f"{mark}{r.median:.2f}x ({r.iqr[0]:.2f}-{r.iqr[1]:.2f})" if iqr else f"{mark}{r.median:.2f}x"


TILDE_NOTE = "~: the per-round ratios' interquartile range crosses 1, so neither side is clearly faster"
_SHORT = {"unfolded-as-trained": "as trained", "unfolded-exported": "exported"}
WIDE = 140  # from this console width on, the bench tables show every IQR and the GFLOP/s columns


@dataclass(frozen=True)
class Column:
    """A column of `fitted_table`: numbers are never cut or wrapped; `wraps` text (names) may fold onto more
    lines; when the table does not fit, columns with the highest `drop` leave first (0: always kept)."""

    header: str
    justify: str = "right"
    wraps: bool = False
    drop: int = 0


def _plain(cell: str) -> str:
    return Text.from_markup(cell).plain


def _render(table: Table, width: int) -> str:
    buf = io.StringIO()
    Console(file=buf, width=width, highlight=False, color_system=None).print(table)
    return buf.getvalue()


def fitted_table(out: Console, title: str, columns: list[Column], rows: list[list[str]]) -> None:
    """Print a table whose numbers stay whole at the console's width. When it does not fit, the headers of
    number columns wrap first; then, while any cell would still be cut or split, the next droppable column
    leaves (highest `drop` first) and a line under the table names what left. Narrow terminals get fewer
    columns or wrapped names and headers, never a cut number."""
    cells = [[_plain(r[i]) for r in rows] for i in range(len(columns))]
    longest = [max(map(len, col), default=1) for col in cells]

    def build(idx: list[int], wrap_headers: bool) -> Table:
        table = Table(title=Text(title), title_justify="left", box=box.SIMPLE_HEAD, pad_edge=False,
                      collapse_padding=True, show_edge=False)
        for i in idx:
            c = columns[i]
            header = c.header
            if wrap_headers and not c.wraps and header:
                header = "\n".join(textwrap.wrap(header, width=max(longest[i], *map(len, header.split()))))
            # a name folds only past 20 characters; a number keeps its whole width
            table.add_column(header, justify=c.justify, overflow="fold",  # type: ignore[arg-type]
                             no_wrap=not c.wraps, min_width=min(longest[i], 20) if c.wraps else longest[i])
        for r in rows:
            table.add_row(*(r[i] for i in idx))
        return table

    def whole(table: Table, idx: list[int]) -> bool:
        lines = _render(table, out.width).splitlines()
        if any(len(line.rstrip()) > out.width or "\u2026" in line for line in lines):
            return False
        # numbers whole on one line; names at least their first 20 characters (a collapsed column shows none)
        return all(any((cell if not columns[i].wraps else cell[:20]) in line for line in lines)
                   for i in idx for cell in cells[i])

    keep = list(range(len(columns)))
    droppable = sorted((i for i, c in enumerate(columns) if c.drop), key=lambda i: -columns[i].drop)
    table = build(keep, False)
    if not whole(table, keep):
        table = build(keep, True)
        while droppable and not whole(table, keep):
            keep.remove(droppable.pop(0))
            table = build(keep, True)
    out.print(table)
    left = [columns[i].header for i in range(len(columns)) if i not in keep]
    if left:
        out.print(Text(f"left out at {out.width} columns: {', '.join(left)} (a wider terminal or --json has them)",
                       style="dim"))


def print_bench(out: Console, result) -> None:
    """The headline table (ratios within one run), the variants, the practical peaks, warnings, skip reasons.

    The headline column, the speed-up over the best alternative with its IQR, always stays; below `WIDE`
    columns the secondary ratios lose their IQR and the GFLOP/s columns go, and on narrower terminals the
    secondary columns leave as `fitted_table` needs (all of it is in the JSON)."""
    from ..bench.report import headline_rows, skipped

    env = result.env
    wide = out.width >= WIDE
    rows = headline_rows(result.records)
    v1 = any(r.vs_absorbed for r in rows)
    title = (f"{env['model']} on {env['device']}: p50 latency (ms) and speed-ups t_other / t_folded (> 1: "
             f"folded is faster; median of {env.get('rounds', 1)} interleaved rounds' ratios, IQR in brackets)")
    cols = [Column("backend", "left", wraps=True), Column("batch"), Column("folded ms"),
            Column("vs best alternative"), Column("which", "left", wraps=True, drop=4), Column("its ms", drop=5),
            Column("vs as-trained", drop=7), Column("vs ResNet", drop=8)]
    cols += [Column("absorbed form", drop=6)] if v1 else []
    cols += [Column("GFLOP/s", drop=10), Column("of peak", drop=9)] if wide else []
    cols += [Column("", "left", drop=3)]
    table_rows = []
    for r in rows:
        best = _SHORT.get(r.best_alternative.against, r.best_alternative.against) if r.best_alternative else "-"
        cells = [r.backend, str(r.batch), _ms(r.folded_ms), _ratio(r.best_alternative), best,
                 _ms(r.best_alternative_ms), _ratio(r.vs_as_trained, wide), _ratio(r.vs_resnet, wide)]
        if v1:
            cells.append(_ratio(r.vs_absorbed, wide))
        if wide:
            cells += [_fmt(r.folded_gflops, ".0f"),
                      _fmt(r.folded_peak_fraction and 100 * r.folded_peak_fraction, ".0f", "%")]
        cells.append("[yellow]noisy[/yellow]" if r.warnings else "")
        table_rows.append(cells)
    fitted_table(out, title, cols, table_rows)
    out.print(Text("which: the fastest alternative on that backend (as trained: the unfolded DiracNet; exported: "
                   "torch.onnx.export defaults + onnxsim); ms: p50 over all timed calls; " + TILDE_NOTE, style="dim"))
    for name, v in env.get("variants", {}).items():
        if v.get("missing"):
            out.print(Text(f"{name}: {v['missing']}", style="dim"))
        else:
            exp = f", ONNX in {v['export_s']:.1f} s" if v.get("export_s") else ""
            out.print(Text(f"{name}: {worded(v['description'])} ({v['params']:,} parameters, {human(v['flops'])}FLOPs{exp})",
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
    cols = [Column("format", "left"), Column("batch"), Column("folded ms"), Column("on", "left", wraps=True),
            Column("speed-up"), Column("best alternative", "left", wraps=True, drop=2), Column("its ms", drop=3),
            Column("ResNet ms", drop=4)]
    table_rows = []
    for r in rows:
        alt = r.alternative or "-"
        for long, short in _SHORT.items():
            alt = alt.replace(long, short)
        table_rows.append([r.format, str(r.batch), _ms(r.folded_ms), r.folded_backend,
                           "-" if r.speedup is None else f"{r.speedup:.2f}x", alt, _ms(r.alternative_ms),
                           _ms(r.resnet_ms)])
    fitted_table(out, "Fastest of each: the folded chain on its best backend vs the best alternative on its best "
                      "(p50 ms; a ratio of p50s across backends)", cols, table_rows)
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
    # one table per batch: the batch column's width goes to the numbers
    cols = [Column("artifact", "left", wraps=True), Column("ms"), Column("speed-up vs fp32 ORT"),
            Column("agreement"), Column("SQNR dB"), Column("accuracy", drop=3), Column("", "left", drop=2)]
    skipped: dict[str, str] = {}
    fp32_accuracy = None
    by_batch: dict[int, list[list[str]]] = {}
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
        by_batch.setdefault(r.batch, []).append([r.name, _ms(r.ms), speed,
                                                 "-" if q.get("agreement") is None else f"{100 * q['agreement']:.2f}%",
                                                 _fmt(q.get("logit_sqnr_db"), ".1f"), acc, flag])
    for i, (batch, table_rows) in enumerate(by_batch.items()):
        title = (f"Low precision, batch {batch}: p50 latency (ms); speed-up = t_fp32_ort / t_artifact (> 1: faster; "
                 "median of per-round ratios, IQR); agreement, logit SQNR and accuracy against fp32 on the eval "
                 "images") if i == 0 else f"Low precision, batch {batch}"
        fitted_table(out, title, cols, table_rows)
    out.print(Text(TILDE_NOTE, style="dim"))
    if fp32_accuracy is not None:
        out.print(Text(f"fp32 accuracy on the eval images: {100 * fp32_accuracy:.2f}%", style="dim"))
    for name, status in skipped.items():
        out.print(Text(f"{name}: {status}", style="dim"))
    if info:
        out.print(Text(f"calibration: {info['calibration']}; evaluation: {info['evaluation']}", style="dim"))


def _db(v) -> str:
    return "-" if v is None else ("exact" if v == float("inf") else f"{v:.1f}")


def print_quantize_layers(out: Console, layers) -> None:
    """quantize's per-conv table: the form each conv runs in and what it loses against fp32."""
    cols = [Column("layer", "left", wraps=True), Column("form", "left"), Column("runs in", "left", drop=3),
            Column("output SQNR"), Column("weight SQNR", drop=2), Column("identity dominance (median)", drop=1)]
    rows = [[escape(layer.name), layer.form, getattr(layer, "runs_in", None) or "-", _db(layer.output_sqnr_db),
             _db(layer.weight_sqnr_db),
             "-" if layer.identity_dominance is None else f"{layer.identity_dominance:.3g}"] for layer in layers]
    fitted_table(out, "per conv: form and SQNR against fp32 (dB)", cols, rows)
    out.print(Text("runs in: the precision the runtime's optimized graph runs the conv in, from its own count "
                   "('?' where the count cannot tell which conv); identity dominance: |diagonal centre tap| / max "
                   "|rest of the filter|, the median over output channels", style="dim"))


def print_layer_stats(out: Console, title: str, shape, stats) -> None:
    """`inspect --layers`: per folded conv, its distance from the identity and its spectrum."""
    def f(v):
        return "-" if v is None else ("inf" if v == float("inf") else f"{v:.3g}")

    cols = [Column("layer", "left", wraps=True), Column("weight", "left"), Column("n", drop=3),
            Column("identity dist."), Column("id. dominance median / max"), Column("spectral norm", drop=2),
            Column("condition", drop=4), Column("activation RMS", drop=1)]
    rows = [[escape(s.name), "x".join(map(str, s.shape)), str(s.input_size), f(s.identity_distance),
             f"{s.identity_dominance:.3g} / {s.identity_dominance_max:.3g}", f(s.spectral_norm),
             f(s.condition_number), f(s.activation_rms)] for s in stats]
    fitted_table(out, f"{title}: per folded conv, input {shape[0]}x{shape[1]}x{shape[2]}", cols, rows)
    out.print("spectra are exact for circular padding at the layer's input size n; '-' marks strided convs.\n"
              "id. dominance: |diagonal centre tap| / max |rest of the filter|, median / max over output "
              "channels; above ~127 per-channel int8 erases the learned part (see `dirac-deploy quantize`)")

"""`dirac-deploy demo`: the pipeline on the embedded default."""

from __future__ import annotations

from pathlib import Path

import click
from rich.markup import escape

from .render import console, err_console, human, input_rows, kv_table
from .tables import print_bench


def _skipped(step) -> None:
    for what, why in step.skipped:
        console().print(f"[yellow]skipped[/yellow] {escape(what)}: {escape(why)}")  # hints hold [extras]


@click.command()
@click.option("--out", type=click.Path(path_type=Path), default=Path("demo-out"), show_default=True,
              help="Directory for the artifacts the demo writes.")
def demo(out):
    """Run the pipeline on the embedded default (a DiracNet-10 trained on 8x8 digits, original layout).

    Folds it (held-out accuracy before/after), exports it to ONNX (folded and as trained) and a Triton
    repository, and ends with a short CPU benchmark against the alternatives. Everything it writes goes to
    --out, including a copy of the checkpoint, so the README's commands run on these files. Steps that need
    an extra that is not installed are skipped, saying which.
    """
    from ..demo import demo_bench, demo_export, demo_fold

    console().rule("1. fold")
    with err_console().status("folding the embedded checkpoint ..."):
        d = demo_fold(out)
    r = d.report
    spec = r.spec
    console().print(kv_table(f"Folded {spec.name}", [
        ("source", f"{d.checkpoint} ({r.layout})"),
        *input_rows((spec.in_channels, spec.input_size, spec.input_size), spec.mean, spec.std, r.provenance),
        ("parameters", f"{r.parameters:,} -> {r.parameters_after:,}"),
        ("FLOPs", f"{human(r.flops)} -> {human(r.flops_after)} per image"),
        ("fold error", r.proof.describe()),
        ("held-out accuracy", f"unfolded {d.accuracy_unfolded:.2%}, folded {d.accuracy_folded:.2%} on "
                              f"{d.holdout_size} images; predictions identical: {'yes' if d.predictions_identical else 'NO'}"),
        ("wrote", str(r.output)),
    ]))
    if not d.predictions_identical:
        raise click.ClickException("folded and unfolded predictions differ on the held-out split")

    console().rule("2. export")
    with err_console().status("exporting to ONNX (folded and as trained) ..."):
        step = demo_export(out)
    if step.result is not None:
        o = step.result.onnx
        console().print(kv_table("ONNX", [
            ("folded graph", f"{o.folded.node_count} nodes ({', '.join(f'{k} x{v}' for k, v in o.folded.nodes.items())})"),
            ("unfolded graph", f"{o.unfolded.node_count} nodes ({', '.join(f'{k} x{v}' for k, v in list(o.unfolded.nodes.items())[:6])}, ...)"),
            ("ORT parity", "; ".join(f"batch {p.batch}: {p.max_rel_error:.2g} of max|logit|, top-1 {p.top1_agreement:.0%}"
                                     for p in o.folded.parity)),
            ("wrote", ", ".join(str(p) for p in step.result.written)),
        ]))
    _skipped(step)

    console().rule("3. bench (short: CPU, batch 1 and 8; `dirac-deploy bench` for the full matrix)")
    with err_console().status("benchmarking ...") as status:
        step = demo_bench(out, lambda msg: status.update(f"benchmarking: {msg}"))
    result, json_path, png_path = step.result
    print_bench(console(), result)
    console().print(f"wrote {json_path}" + (f" and {png_path}" if png_path else ""))
    _skipped(step)

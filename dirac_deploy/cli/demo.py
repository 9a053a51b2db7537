"""`dirac-deploy demo`: the pipeline on the embedded default."""

from __future__ import annotations

from pathlib import Path

import click

from ..demo import demo_bench, demo_export, demo_fold
from . import main
from .render import console, human, kv_table, print_bench


@main.command()
@click.option("--out", type=click.Path(path_type=Path), default=Path("demo-out"), show_default=True,
              help="Directory for the artifacts the demo writes.")
def demo(out):
    """Run the pipeline on the embedded default (a DiracNet-10 trained on 8x8 digits, original layout).

    Folds it (held-out accuracy before/after), exports it to ONNX (folded and as trained), and ends with a
    short CPU benchmark. Everything it writes goes to --out.
    """
    console().rule("1. fold")
    with console().status("folding the embedded checkpoint ..."):
        d = demo_fold(out)
    r = d.report
    console().print(kv_table(f"Folded {r.spec.name}", [
        ("source", f"{r.path.name} ({r.layout})"),
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
    with console().status("exporting to ONNX (folded and as trained) ..."):
        e = demo_export(out)
    o = e.onnx
    console().print(kv_table("ONNX", [
        ("folded graph", f"{o.folded.node_count} nodes ({', '.join(f'{k} x{v}' for k, v in o.folded.nodes.items())})"),
        ("unfolded graph", f"{o.unfolded.node_count} nodes ({', '.join(f'{k} x{v}' for k, v in list(o.unfolded.nodes.items())[:6])}, ...)"),
        ("ORT parity", "; ".join(f"batch {p.batch}: {p.max_rel_error:.2g} of max|logit|, top-1 {p.top1_agreement:.0%}"
                                 for p in o.folded.parity)),
        ("wrote", f"{o.folded.path}, {o.unfolded.path}, {e.triton[0].config_path.parent}"),
    ]))

    console().rule("3. bench (short: CPU, batch 1 and 8; `dirac-deploy bench` for the full matrix)")
    with console().status("benchmarking ...") as status:
        result, json_path, png_path = demo_bench(out, lambda msg: status.update(f"benchmarking: {msg}"))
    print_bench(console(), result)
    console().print(f"wrote {json_path} and {png_path}")

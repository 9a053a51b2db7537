"""`dirac-deploy demo`: the pipeline on the embedded default."""

from __future__ import annotations

from pathlib import Path

import click

from ..demo import demo_fold
from . import main
from .render import console, human, kv_table


@main.command()
@click.option("--out", type=click.Path(path_type=Path), default=Path("demo-out"), show_default=True,
              help="Directory for the artifacts the demo writes.")
def demo(out):
    """Run the pipeline on the embedded default (a DiracNet-10 trained on 8x8 digits, original layout)."""
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

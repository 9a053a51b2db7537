"""`dirac-deploy fold` and `dirac-deploy inspect`."""

from __future__ import annotations

from pathlib import Path

import click

from ..fold.from_checkpoint import fold_checkpoint, inspect_checkpoint
from . import main
from .options import checkpoint_options, load_options
from .render import console, human, inspect_rows, kv_table


@main.command()
@click.argument("checkpoint", type=click.Path(path_type=Path))
@click.option("-o", "--output", type=click.Path(path_type=Path), required=True,
              help="Where to write the folded plain chain (plain.pth).")
@click.option("--check-batch", type=click.IntRange(1, 1024), default=4, show_default=True,
              help="Seeded random images the fold is verified on.")
@checkpoint_options
def fold(checkpoint, output, check_batch, **opts):
    """Fold a DiracNet CHECKPOINT into a verified plain conv-ReLU chain.

    Reads every known layout (original train.py model.pt7, published params/stats and folded files, this
    project's DiracNet state_dict), folds Dirac delta, alpha/beta and batch norm into one conv per layer,
    verifies the chain against the source on seeded inputs and writes OUTPUT only if it matches
    (max|logit error| <= 1e-4 x max|logit|, identical top-1).
    """
    with console().status(f"folding {checkpoint} ..."):
        r = fold_checkpoint(checkpoint, output, load_options(**opts), check_batch=check_batch)
    size = r.spec.input_size
    rows = inspect_rows(r) + [
        ("parameters", f"{r.parameters:,} -> {r.parameters_after:,}"),
        ("FLOPs", f"{human(r.flops)} -> {human(r.flops_after)} per image at {size}x{size}"),
        ("fold error", r.proof.describe()),
        ("wrote", str(r.output)),
    ]
    console().print(kv_table(f"Folded {r.spec.name}", rows))


@main.command()
@click.argument("checkpoint", type=click.Path(path_type=Path))
@checkpoint_options
def inspect(checkpoint, **opts):
    """Show what CHECKPOINT holds (layout, architecture, size) without folding it."""
    r = inspect_checkpoint(checkpoint, load_options(**opts))
    size = r.spec.input_size
    rows = inspect_rows(r) + [("parameters", f"{r.parameters:,}"),
                              ("FLOPs", f"{human(r.flops)} per image at {size}x{size}")]
    console().print(kv_table(f"{r.spec.name}", rows))

"""`dirac-deploy fold` and `dirac-deploy inspect`."""

from __future__ import annotations

from pathlib import Path

import click

from ..fileio import check_output_path
from ..pipeline import fold_checkpoint, inspect_checkpoint
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
@click.option("--layers", is_flag=True,
              help="Fold and show per-layer identity distance, exact spectral norm and condition number (FFT), "
                   "and activation scale.")
@click.option("--plot", type=click.Path(path_type=Path), help="With --layers: also write these as a PNG.")
@checkpoint_options
def inspect(checkpoint, layers, plot, **opts):
    """Show what CHECKPOINT holds (layout, architecture, size) without folding it.

    With --layers, CHECKPOINT may also be a plain.pth: each folded conv is compared with a scaled identity
    (||W - c delta|| / ||W||), its spectrum computed exactly for circular padding from the kernel's FFT
    (Sedghi et al., ICLR 2019), and the activation RMS traced on random input.
    """
    if plot and not layers:
        raise click.UsageError("--plot goes with --layers")
    if layers:
        _inspect_layers(checkpoint, plot, load_options(**opts))
        return
    r = inspect_checkpoint(checkpoint, load_options(**opts))
    size = r.spec.input_size
    rows = inspect_rows(r) + [("parameters", f"{r.parameters:,}"),
                              ("FLOPs", f"{human(r.flops)} per image at {size}x{size}")]
    console().print(kv_table(f"{r.spec.name}", rows))


def _inspect_layers(path, plot, options):
    from rich.table import Table

    from ..layer_analysis import inspect_layers, plot_layers

    if plot:
        check_output_path(plot, path)
    with console().status("folding and analysing ..."):
        title, shape, stats = inspect_layers(path, options)
    table = Table(title=f"{title}: per folded conv, input {shape[0]}x{shape[1]}x{shape[2]}", title_justify="left")
    for col in ("layer", "weight", "n", "identity dist.", "spectral norm", "condition", "activation RMS"):
        table.add_column(col, justify="left" if col in ("layer", "weight") else "right")

    def f(v):
        return "-" if v is None else ("inf" if v == float("inf") else f"{v:.3g}")

    for s in stats:
        table.add_row(s.name, "x".join(map(str, s.shape)), str(s.input_size), f(s.identity_distance),
                      f(s.spectral_norm), f(s.condition_number), f(s.activation_rms))
    console().print(table)
    console().print("spectra are exact for circular padding at the layer's input size n; '-' marks strided convs")
    if plot:
        console().print(f"wrote {plot_layers(stats, plot, title)}")

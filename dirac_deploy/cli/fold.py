"""`dirac-deploy fold` and `dirac-deploy inspect`."""

from __future__ import annotations

from pathlib import Path

import click
from rich.text import Text

from .options import checkpoint_options, load_options
from .render import (
    check_json_path,
    console,
    emit_json,
    human,
    input_rows,
    inspect_rows,
    json_option,
    kv_table,
    outputs_with_report,
    progress_status,
    settings,
    sign_option,
    sign_written,
)
from .tables import print_layer_stats


@click.command()
@click.argument("checkpoint", type=click.Path(path_type=Path))
@click.option("-o", "--output", type=click.Path(path_type=Path), required=True,
              help="Where to write the folded plain chain (plain.pth).")
@click.option("--check-batch", type=click.IntRange(1, 64), default=4, show_default=True,
              help="Seeded random images the fold is verified on.")
@json_option
@sign_option
@checkpoint_options
def fold(checkpoint, output, check_batch, json_path, sign_key, **opts):
    """Fold a DiracNet CHECKPOINT into a verified plain conv-ReLU chain.

    Reads every known layout (original train.py model.pt7, published params/stats and folded files, DiracNet
    v1 files, this project's DiracNet state_dict), folds Dirac delta, alpha/beta and batch norm into one conv
    per layer, verifies the chain against the source on seeded inputs and writes OUTPUT only if it matches
    (max|logit error| <= 1e-4 x max|logit|, identical top-1).
    """
    from ..pipeline import fold_checkpoint

    check_json_path(json_path, checkpoint, output, sign_key)
    status, _ = progress_status(f"folding {checkpoint} ...")
    with outputs_with_report(json_path, sign_key):  # plain.pth, its signature and the report: all or none
        with status:
            r = fold_checkpoint(checkpoint, output, load_options(**opts), check_batch=check_batch)
        signed = sign_written(sign_key, [r.output])
        to_stdout = emit_json(json_path, r.to_json())
    if to_stdout:
        return
    size = r.spec.input_size
    rows = inspect_rows(r) + [
        ("parameters", f"{r.parameters:,} -> {r.parameters_after:,}"),
        ("FLOPs", f"{human(r.flops)} -> {human(r.flops_after)} per image at {size}x{size}"),
        ("fold error", r.proof.describe()),
        ("wrote", str(r.output)),
        *[("signed", str(sig)) for sig in signed],
    ]
    console().print(kv_table(f"Folded {r.spec.name}", rows))


@click.command()
@click.argument("model", type=click.Path(path_type=Path))
@click.option("--layers", is_flag=True,
              help="Fold and show per-layer identity distance, exact spectral norm and condition number (FFT), "
                   "and activation scale.")
@click.option("--plot", type=click.Path(path_type=Path), help="With --layers: also write these as a PNG.")
@json_option
@checkpoint_options
def inspect(model, layers, plot, json_path, **opts):
    """Show what MODEL holds: a checkpoint (layout, architecture, size; nothing is folded), a plain.pth (its
    layers, size, provenance and recorded proof) or an .onnx (ops, metadata, audit and parity probe).

    With --layers (a checkpoint or plain.pth): each folded conv is compared with a scaled identity
    (||W - c delta|| / ||W||), its spectrum computed exactly for circular padding from the kernel's FFT
    (Sedghi et al., ICLR 2019), and the activation RMS traced on random input.
    """
    if plot and not layers:
        raise click.UsageError("--plot goes with --layers")
    check_json_path(json_path, model, plot)
    if layers:
        _inspect_layers(model, plot, load_options(**opts), json_path)
        return
    from ..opener import inspect_file
    from ..pipeline import InspectReport

    status, _ = progress_status(f"reading {model} ...")
    with status:
        r = inspect_file(model, load_options(**opts))
    if emit_json(json_path, r.to_json()):
        _fail_on_failed_checks(r, shown=False)
        return
    if isinstance(r, InspectReport):
        size = r.spec.input_size
        rows = inspect_rows(r) + [("parameters", f"{r.parameters:,}"),
                                  ("FLOPs", f"{human(r.flops)} per image at {size}x{size}")]
        console().print(kv_table(f"{r.spec.name}", rows))
        return
    p = r.provenance
    rows = [("file", f"{r.path} ({r.kind})"), ("architecture", r.name),
            *input_rows(r.input_shape, None if p.mean is None else list(p.mean),
                        None if p.std is None else list(p.std), dict(p.origins)),
            ("classes", str(r.num_classes))]
    if r.parameters is not None:
        rows += [("parameters", f"{r.parameters:,}"), ("FLOPs", f"{human(r.flops)} per image")]
    rows.append(("layers" if r.kind == "plain file" else "ops", ", ".join(f"{k} x{v}" for k, v in r.ops.items())))
    if r.kind == "plain file" and (p.source_file or p.source_sha256):
        rows.append(("folded from", f"{p.source_file or '?'} (sha256 {p.source_sha256[:12]}), "
                                    f"layout {p.layout or '?'}" + ("" if p.content_sha256 else " (unverified claim)")))
    elif r.kind != "plain file":
        rows += [(label, value[:80]) for label, value in (("layout", p.layout), ("source_sha256", p.source_sha256),
                                                          ("graph", p.graph)) if value]
    rows += list(r.checks)
    console().print(kv_table(r.name, rows))
    _fail_on_failed_checks(r, shown=not settings().quiet)


def _fail_on_failed_checks(r, shown: bool) -> None:
    """Exit 1 when a check failed. When the table above (`shown`) already says which and why, the error line
    only points to it; otherwise (-q, --json -) it carries the whole reason."""
    if not getattr(r, "ok", True):
        failed = [(check, result) for check, result in r.checks if result.startswith("FAILED")]
        if not shown:
            why = "; ".join(f"{check}: {result}" for check, result in failed)
            raise click.ClickException(" ".join(f"{r.path} failed its checks ({why})".split()))
        raise click.ClickException(f"{r.path} failed its checks: {', '.join(c for c, _ in failed)} (above)")


def _inspect_layers(path, plot, options, json_path):
    from ..layer_analysis import inspect_layers, plot_layers

    if plot:
        from ..fileio import check_output_path

        check_output_path(plot, path)
    status, _ = progress_status("folding and analysing ...")
    with outputs_with_report(json_path):  # the plot and the report land together or not at all
        with status:
            title, shape, stats = inspect_layers(path, options)
        wrote = plot_layers(stats, plot, title) if plot else None
        to_stdout = emit_json(json_path, {"schema": "dirac-deploy/inspect-layers", "version": 1, "model": title,
                                          "input_shape": list(shape), "layers": [vars(s) for s in stats]})
    if to_stdout:
        return
    print_layer_stats(console(), title, shape, stats)
    if wrote:
        console().print(Text(f"wrote {wrote}"))

"""Options shared by commands that read checkpoints."""

from __future__ import annotations

import math

import click

from ..spec import MAX_INPUT_SIZE


def _floats(_ctx, _param, value):
    if value is None:
        return None
    try:
        values = tuple(float(v) for v in value.split(","))
    except ValueError:
        values = ()
    if not values or not all(math.isfinite(v) for v in values):
        raise click.BadParameter(f"expected comma-separated finite numbers such as 0.485,0.456,0.406, got {value!r}")
    return values


def checkpoint_options(f):
    """--trust-checkpoint, --bn-eps, --input-size, --mean, --std, --final-relu, --ncrelu."""
    f = click.option("--ncrelu", type=click.Choice(["keep", "absorb"]), default="keep", show_default=True,
                     help="DiracNet v1 fold form: keep NCReLU as a layer (the authors' size) or absorb it into the "
                          "conv before it (a pure conv-ReLU chain; those convs get twice the outputs).")(f)
    f = click.option("--final-relu/--no-final-relu", default=None,
                     help="Force the ReLU before the average pool on or off [default: what the layout implies: v2 "
                          "and the released v1 files have one, the v1 branch's own code has none].")(f)
    f = click.option("--std", callback=_floats, help="Input std per channel, comma-separated (metadata).")(f)
    f = click.option("--mean", callback=_floats, help="Input mean per channel, comma-separated (metadata).")(f)
    f = click.option("--input-size", type=click.IntRange(8, MAX_INPUT_SIZE),
                     help="Image size the net expects [default: 224 for ImageNet stems, 32 for CIFAR].")(f)
    f = click.option("--bn-eps", type=click.FloatRange(min=0, max=1, min_open=True),
                     help="Batch-norm epsilon of the source [default: 1e-5, the original code's].")(f)
    f = click.option("--trust-checkpoint", is_flag=True,
                     help="Allow full unpickling (can run arbitrary code). Only for files from a source you trust.")(f)
    return f


def load_options(trust_checkpoint, bn_eps, input_size, mean, std, final_relu=None, ncrelu="keep"):
    from ..load_options import LoadOptions  # torch-free (serving an .onnx needs no PyTorch)

    return LoadOptions(trust_checkpoint=trust_checkpoint, bn_eps=bn_eps, input_size=input_size, mean=mean, std=std,
                       final_relu=final_relu, ncrelu=ncrelu)

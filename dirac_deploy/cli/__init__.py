"""`dirac-deploy` command line: each command parses options, calls one library function and prints its result.

User errors (`DiracDeployError`) become one line on stderr and exit status 1; anything else is a bug and
keeps its traceback. Command modules import the library inside their functions, so `--help` does not load
torch or onnx.
"""

from __future__ import annotations

import logging
import sys

import click

from .render import Settings


class _Group(click.Group):
    def invoke(self, ctx):
        from ..errors import DiracDeployError

        try:
            return super().invoke(ctx)
        except DiracDeployError as e:
            raise click.ClickException(" ".join(str(e).split())) from None
        except KeyboardInterrupt:
            click.echo("Error: interrupted", err=True)
            sys.exit(130)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.option("-q", "--quiet", is_flag=True, help="Print nothing but errors (and --json output).")
@click.option("-v", "--verbose", count=True, help="More detail: the library's log (-vv: debug).")
@click.version_option(package_name="dirac-deploy")
@click.pass_context
def main(ctx, quiet: bool, verbose: int) -> None:
    """Fold DiracNets into verified plain conv-ReLU chains; export, benchmark and serve them.

    \b
    dirac-deploy demo                            the whole pipeline on the embedded default
    dirac-deploy fold ckpt.pth -o plain.pth      any DiracNet checkpoint -> verified plain chain
    dirac-deploy inspect FILE                    what a checkpoint, plain.pth or .onnx holds
    dirac-deploy export plain.pth --onnx m.onnx  ONNX (+ --trt m.plan, --triton-repo DIR), verified
    dirac-deploy quantize plain.pth -o q.onnx    int8 (identity kept exact) / fp16 / bf16, proven
    dirac-deploy bench --device cpu              folded vs the alternatives: table, JSON, plot
    dirac-deploy serve m.onnx                    Open Inference Protocol (KServe v2) endpoint
    """
    ctx.obj = Settings(quiet=quiet, verbose=verbose)
    if verbose:
        logging.basicConfig(level=logging.DEBUG if verbose > 1 else logging.INFO, stream=sys.stderr,
                            format="%(levelname)s %(name)s: %(message)s")


# Commands register themselves on `main` when imported.
from . import bench as _bench  # noqa: E402,F401
from . import demo as _demo  # noqa: E402,F401
from . import export as _export  # noqa: E402,F401
from . import fold as _fold  # noqa: E402,F401
from . import quantize as _quantize  # noqa: E402,F401
from . import serve as _serve  # noqa: E402,F401

"""`dirac-deploy` command line: each command parses options, calls one library function and prints its result.

User errors (`DiracDeployError`) become one line on stderr and exit status 1; anything else is a bug and
keeps its traceback.
"""

from __future__ import annotations

import click

from ..errors import DiracDeployError


class _Group(click.Group):
    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except DiracDeployError as e:
            raise click.ClickException(" ".join(str(e).split())) from None


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(package_name="dirac-deploy")
def main() -> None:
    """Fold DiracNets into verified plain conv-ReLU chains; export, benchmark and serve them.

    \b
    dirac-deploy fold ckpt.pth -o plain.pth      any DiracNet checkpoint -> verified plain chain
    dirac-deploy inspect ckpt.pth                what a checkpoint holds, without folding
    dirac-deploy export plain.pth --onnx m.onnx  ONNX (+ --trt m.plan, --triton-repo DIR), verified
    dirac-deploy bench --device cpu              folded vs unfolded vs ResNet: table, JSON, plot
    dirac-deploy serve plain.pth                 Open Inference Protocol (KServe v2) endpoint
    dirac-deploy demo                            the whole pipeline on the embedded default
    """


# Commands register themselves on `main` when imported.
from . import bench as _bench  # noqa: E402,F401
from . import demo as _demo  # noqa: E402,F401
from . import export as _export  # noqa: E402,F401
from . import fold as _fold  # noqa: E402,F401
from . import serve as _serve  # noqa: E402,F401

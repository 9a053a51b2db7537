"""`dirac-deploy` command line: each command parses options, calls one library function and prints its result.

User errors (`DiracDeployError`) become one line on stderr, the settings they name worded as the command's
flags (`wording`), and exit status 1 (3 when a speed proof is
undecided: the machine was too noisy; 2 for a usage error). Anything else is a bug or a
case nobody foresaw: it too is one line (its type, its message's first line, the command and its file
arguments) with exit status 2, and `-v` prints the traceback. Command modules import the library inside their
functions, so `--help` does not load torch or onnx.
"""

from __future__ import annotations

import logging
import sys

import click

from .render import Settings
from .wording import for_command_line


class _UsageLine(click.ClickException):
    """A usage error as one line (click prints four: usage, a hint, a blank line, the error); exit status 2."""

    exit_code = 2


def _one_line(e: click.UsageError) -> click.ClickException | click.UsageError:
    if isinstance(e, click.exceptions.NoArgsIsHelpError):
        return e  # a bare command prints its help
    path = e.ctx.command_path if e.ctx is not None else "dirac-deploy"
    return _UsageLine(f"{' '.join(e.format_message().split())} (`{path} --help` lists the options)")


class _Group(click.Group):
    def make_context(self, info_name, args, parent=None, **extra):
        try:
            return super().make_context(info_name, args, parent, **extra)
        except click.UsageError as e:
            raise _one_line(e) from None

    def parse_args(self, ctx, args):
        ctx.argv = list(args)  # for the one line an unexpected error becomes
        return super().parse_args(ctx, args)

    def invoke(self, ctx):
        from ..errors import DiracDeployError, first_line

        try:
            return super().invoke(ctx)
        except click.UsageError as e:
            raise _one_line(e) from None
        except DiracDeployError as e:
            command = self.get_command(ctx, ctx.invoked_subcommand) if ctx.invoked_subcommand else None
            one_line = click.ClickException(" ".join(for_command_line(str(e), command).split()))
            one_line.exit_code = getattr(e, "exit_code", 1)  # 3: a speed proof too noisy to decide
            raise one_line from None
        except KeyboardInterrupt:
            click.echo("Error: interrupted", err=True)
            sys.exit(130)
        except (click.exceptions.Exit, click.ClickException, click.Abort, SystemExit):
            raise
        except Exception as e:
            settings = ctx.find_object(Settings)
            if settings is not None and settings.verbose:
                raise
            first = first_line(e)
            args = " ".join(a for a in getattr(ctx, "argv", []) if not a.startswith("-"))[:200]
            click.echo(f"Error: unexpected {type(e).__name__}: {first} (in `dirac-deploy {args}`; run with -v for "
                       f"the traceback, and please report it)", err=True)
            sys.exit(2)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.option("-q", "--quiet", is_flag=True, help="Print nothing but errors (and --json output).")
@click.option("-v", "--verbose", count=True, help="More detail: the library's log (-vv: debug).")
@click.version_option(package_name="dirac-deploy")
@click.pass_context
def main(ctx, quiet: bool, verbose: int) -> None:
    """Fold DiracNets into verified plain conv-ReLU chains; export, benchmark and serve them.

    \b
    dirac-deploy demo                        the pipeline on the embedded default
    dirac-deploy fold ckpt.pth -o plain.pth  checkpoint -> verified plain chain
    dirac-deploy inspect FILE                what a model file holds, checked
    dirac-deploy export plain.pth --onnx m.onnx      ONNX, Triton, TensorRT
    dirac-deploy quantize plain.pth -o q.xml int8 keeping the identity, proven
    dirac-deploy bench --device cpu          folded vs the alternatives
    dirac-deploy serve m.onnx                Open Inference Protocol endpoint
    dirac-deploy verify m.onnx --key k.pub   check an artifact's signature
    """
    ctx.obj = Settings(quiet=quiet, verbose=verbose)
    if verbose:
        logging.basicConfig(level=logging.DEBUG if verbose > 1 else logging.INFO, stream=sys.stderr,
                            format="%(levelname)s %(name)s: %(message)s")


# Every command, registered here (the modules stay importable by name: dirac_deploy.cli.fold is the module).
from . import bench as _bench  # noqa: E402
from . import demo as _demo  # noqa: E402
from . import export as _export  # noqa: E402
from . import fold as _fold  # noqa: E402
from . import quantize as _quantize  # noqa: E402
from . import serve as _serve  # noqa: E402
from . import verify as _verify  # noqa: E402

for _command in (_demo.demo, _fold.fold, _fold.inspect, _export.export, _quantize.quantize, _bench.bench,
                 _serve.serve, _verify.verify):
    main.add_command(_command)

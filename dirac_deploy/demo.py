"""The main job on the embedded default: fold the shipped digits DiracNet, show nothing was lost, export it,
and benchmark it against what a user could run instead.

Each step returns data; the CLI prints it. A step, or part of one, that needs an optional dependency which is
not installed is skipped with the reason and the install command, so a plain `pip install dirac-deploy` runs
the demo end to end (fold, and the eager PyTorch benchmark).
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from pathlib import Path

import torch

from ._optional import INSTALL, available
from .artifacts.plain import load_plain
from .checkpoint import LoadOptions, load_checkpoint
from .data import embedded_checkpoint, load_holdout
from .errors import MissingDependencyError, OutputPathError
from .pipeline import FoldReport, fold_checkpoint

CHECKPOINT_NAME = "digits_diracnet.pt7"  # a copy of the embedded checkpoint, for the README's commands


@dataclass
class DemoFold:
    report: FoldReport
    accuracy_unfolded: float
    accuracy_folded: float
    predictions_identical: bool
    holdout_size: int
    checkpoint: Path


@dataclass
class DemoStep:
    """A step's result, and what it skipped (`(what, why and how to install it)`)."""

    result: object = None
    skipped: list[tuple[str, str]] = field(default_factory=list)


def prepare_out_dir(path: str | Path) -> Path:
    """The demo's output directory, created if missing (its parent must exist)."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise OutputPathError(f"`out` {path} exists and is not a directory; give a directory for the demo's files")
    try:
        path.mkdir(exist_ok=True)
    except OSError as e:
        raise OutputPathError(f"cannot create `out` directory {path}: {e.strerror}") from None
    return path


def _missing(*modules: str) -> str | None:
    """The install hint for the first module that is not installed, or None when all are."""
    for module in modules:
        if not available(module):
            return f"needs {module}: {INSTALL.get(module, 'pip install ' + module)}"
    return None


@torch.no_grad()
def _predict(model, x: torch.Tensor) -> torch.Tensor:
    return model(x).argmax(1)


def demo_fold(out_dir: str | Path) -> DemoFold:
    """Copy the embedded checkpoint into `out_dir`, fold it into `out_dir/digits_plain.pth` and compare held-out
    accuracy before and after."""
    out_dir = prepare_out_dir(out_dir)
    ckpt = out_dir / CHECKPOINT_NAME
    shutil.copyfile(embedded_checkpoint(), ckpt)
    report = fold_checkpoint(ckpt, out_dir / "digits_plain.pth")
    x, y = load_holdout()
    unfolded = load_checkpoint(ckpt).model
    assert report.output is not None  # fold_checkpoint was given an output
    folded = load_plain(report.output)
    p_unfolded, p_folded = _predict(unfolded, x), _predict(folded, x)
    return DemoFold(report, float((p_unfolded == y).float().mean()), float((p_folded == y).float().mean()),
                    bool(torch.equal(p_unfolded, p_folded)), len(y), ckpt)


def demo_export(out_dir: str | Path) -> DemoStep:
    """Export the embedded default to ONNX, folded and as trained, and a Triton repository, into `out_dir`."""
    out_dir = prepare_out_dir(out_dir)
    step = DemoStep()
    why = _missing("onnxruntime", "onnxscript", "onnxsim")
    if why:
        step.skipped.append(("ONNX export", why))
        return step
    from .export.from_file import export_file

    triton = None
    why = _missing("tritonclient", "google.protobuf")
    if why:
        step.skipped.append(("Triton repository", why))
    else:
        # not "triton": a folder of that name in the working directory shadows the triton package that
        # torch.compile / torch.export import, and breaks them for anyone who runs Python there
        triton = out_dir / "model_repository"
    step.result = export_file(embedded_checkpoint(), out_dir / "digits.onnx", unfolded=True, triton_repo=triton,
                              name="digits_diracnet")
    return step


def demo_bench(out_dir: str | Path, progress=lambda _msg: None) -> DemoStep:
    """A short CPU benchmark of the embedded default (batches 1 and 8): JSON and plot into `out_dir`.

    Returns a DemoStep whose result is (BenchResult, json path, plot path or None).
    """
    from .bench.report import write_json, write_plot
    from .bench.run import BenchConfig, run_benchmark

    out_dir = prepare_out_dir(out_dir)
    step = DemoStep()
    why = _missing("onnxruntime", "onnxscript", "onnxsim")
    if why:
        step.skipped.append(("ONNX Runtime backends", why))
    cfg = BenchConfig(model_path=embedded_checkpoint(), batches=(1, 8), warmup=2, iters=20, max_seconds=0.5,
                      options=LoadOptions(), backends=None if why is None else ("torch",))
    result = run_benchmark(cfg, progress)
    json_path = write_json(out_dir / "bench.json", result.to_json())
    png_path = None
    try:
        png_path = write_plot(out_dir / "bench.png", result.records,
                              f"{result.env['model']} (cpu, {result.env['threads']} threads)")
    except MissingDependencyError as e:
        step.skipped.append(("plot", str(e).split("install it with: ")[-1]))
    step.result = (result, json_path, png_path)
    return step

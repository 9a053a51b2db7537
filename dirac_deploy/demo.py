"""The main job on the embedded default: fold the shipped digits DiracNet and show nothing was lost.

Each step returns data; the CLI prints it. Later pipeline stages (export, bench) append their own step.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from .bench.report import write_json, write_plot
from .bench.run import BenchConfig, BenchResult, run_benchmark
from .checkpoint import load_checkpoint
from .data import embedded_checkpoint, load_holdout
from .errors import OutputPathError
from .export.from_file import ExportReport, export_file
from .pipeline import FoldReport, fold_checkpoint
from .plainfile import load_plain


@dataclass
class DemoFold:
    report: FoldReport
    accuracy_unfolded: float
    accuracy_folded: float
    predictions_identical: bool
    holdout_size: int


def prepare_out_dir(path: str | Path) -> Path:
    """The demo's output directory, created if missing (its parent must exist)."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise OutputPathError(f"--out {path} exists and is not a directory; give a directory for the demo's files")
    try:
        path.mkdir(exist_ok=True)
    except OSError as e:
        raise OutputPathError(f"cannot create --out directory {path}: {e.strerror}") from None
    return path


@torch.no_grad()
def _predict(model, x: torch.Tensor) -> torch.Tensor:
    return model(x).argmax(1)


def demo_fold(out_dir: str | Path) -> DemoFold:
    """Fold the embedded checkpoint into `out_dir/digits_plain.pth` and compare held-out accuracy."""
    out_dir = prepare_out_dir(out_dir)
    ckpt = embedded_checkpoint()
    report = fold_checkpoint(ckpt, out_dir / "digits_plain.pth")
    x, y = load_holdout()
    unfolded = load_checkpoint(ckpt).model
    folded = load_plain(report.output)
    p_unfolded, p_folded = _predict(unfolded, x), _predict(folded, x)
    return DemoFold(report, float((p_unfolded == y).float().mean()), float((p_folded == y).float().mean()),
                    bool(torch.equal(p_unfolded, p_folded)), len(y))


def demo_export(out_dir: str | Path) -> ExportReport:
    """Export the embedded default to ONNX, folded and as trained, into `out_dir`."""
    out_dir = prepare_out_dir(out_dir)
    return export_file(embedded_checkpoint(), out_dir / "digits.onnx", unfolded=True,
                       triton_repo=out_dir / "triton", name="digits_diracnet")


def demo_bench(out_dir: str | Path, progress=lambda msg: None) -> tuple[BenchResult, Path, Path]:
    """A short benchmark of the embedded default (CPU; batches 1 and 8): JSON and plot into `out_dir`."""
    out_dir = prepare_out_dir(out_dir)
    cfg = BenchConfig(model_path=embedded_checkpoint(), batches=(1, 8), warmup=2, iters=20, max_seconds=0.5)
    result = run_benchmark(cfg, progress)
    json_path = write_json(out_dir / "bench.json", result.to_json())
    png_path = write_plot(out_dir / "bench.png", result.records, f"{result.env['model']} (cpu, {result.env['threads']} threads)")
    return result, json_path, png_path

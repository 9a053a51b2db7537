"""ONNX -> serialized TensorRT engine with the TensorRT 11 Python API.

TensorRT 11 networks are strongly typed: precision comes from the ONNX tensors, not from builder flags
(BuilderFlag.FP16/INT8 are gone). An fp16 engine therefore starts from an fp16 ONNX graph; before building
one, `fp16.scan_fp16` reports folded weights that overflow or turn subnormal in fp16.
TensorRT is imported by `runtimes.tensorrt` (which builds engines for export and bench alike), only when asked for.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..fileio import atomic_write
from ..runtimes.tensorrt import MAX_BATCH, BatchRange, build_plan

__all__ = ["MAX_BATCH", "BatchRange", "EngineReport", "build_engine", "build_plan"]


@dataclass
class EngineReport:
    path: Path
    tensorrt_version: str
    batch_range: BatchRange
    workspace_mb: int
    size_bytes: int


def build_engine(onnx_path: str | Path, plan_path: str | Path, *, input_shape: tuple[int, int, int],
                 batch_range: BatchRange, workspace_mb: int = 1024) -> EngineReport:
    """Build a serialized engine (`build_plan`) and write it to `plan_path` (atomically)."""
    data, version = build_plan(onnx_path, input_shape=input_shape, batch_range=batch_range, workspace_mb=workspace_mb)
    path = atomic_write(plan_path, lambda tmp: tmp.write_bytes(data))
    return EngineReport(path, version, batch_range, workspace_mb, len(data))

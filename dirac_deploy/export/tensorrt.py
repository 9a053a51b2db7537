"""ONNX -> serialized TensorRT engine with the TensorRT 11 Python API.

TensorRT 11 networks are strongly typed: precision comes from the ONNX tensors, not from builder flags
(BuilderFlag.FP16/INT8 are gone). An fp16 engine therefore starts from an fp16 ONNX graph; before building
one, `fp16.scan_fp16` reports folded weights that overflow or turn subnormal in fp16.
TensorRT is imported here and only here, when a build is asked for.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from .._optional import require
from ..errors import ExportError
from ..fileio import atomic_write
from ..spec import INPUT_NAME

MAX_BATCH = 4096  # Triton's max_batch_size and the TensorRT profile; larger batches belong to a data loader


@dataclass(frozen=True)
class BatchRange:
    """Optimization profile for the batch axis: min <= opt <= max."""

    min: int
    opt: int
    max: int

    @classmethod
    def parse(cls, text: str) -> "BatchRange":
        """'MIN:OPT:MAX', e.g. '1:8:32'."""
        parts = text.split(":")
        try:
            values = [int(p) for p in parts]
        except ValueError:
            values = []
        if len(values) != 3 or not (1 <= values[0] <= values[1] <= values[2] <= MAX_BATCH):
            raise ExportError(f"bad batch range {text!r}: expected MIN:OPT:MAX with 1 <= MIN <= OPT <= MAX <= "
                              f"{MAX_BATCH}, e.g. 1:8:32")
        return cls(*values)


@dataclass
class EngineReport:
    path: Path
    tensorrt_version: str
    batch_range: BatchRange
    workspace_mb: int
    size_bytes: int


def build_plan(onnx_path: str | Path, *, input_shape: tuple[int, int, int], batch_range: BatchRange,
               workspace_mb: int = 1024) -> tuple[bytes, str]:
    """A serialized engine for `onnx_path` and the TensorRT version that built it (nothing written).

    Args:
        onnx_path: an ONNX file from `export_onnx` (fp32, or fp16 / QDQ int8 if converted beforehand).
        input_shape: (channels, height, width) of one image.
        batch_range: optimization profile for the dynamic batch axis.
        workspace_mb: builder workspace memory pool limit.

    Raises:
        MissingDependencyError: TensorRT is not installed (the message names the install command).
        ExportError: the ONNX parser or the builder failed.
    """
    trt = require("tensorrt")
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    # STRONGLY_TYPED is required opt-in on 10.12+ and the only mode in 11.x (where the flag is accepted and ignored).
    network = builder.create_network(1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED))
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise ExportError(f"TensorRT could not parse {onnx_path}: {errors}")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, workspace_mb << 20)
    profile = builder.create_optimization_profile()
    c, h, w = input_shape
    profile.set_shape(INPUT_NAME, (batch_range.min, c, h, w), (batch_range.opt, c, h, w), (batch_range.max, c, h, w))
    config.add_optimization_profile(profile)
    plan = builder.build_serialized_network(network, config)
    if plan is None:
        raise ExportError(f"TensorRT failed to build an engine from {onnx_path} (see the TensorRT log above)")
    return bytes(plan), str(trt.__version__)


def build_engine(onnx_path: str | Path, plan_path: str | Path, *, input_shape: tuple[int, int, int],
                 batch_range: BatchRange, workspace_mb: int = 1024) -> EngineReport:
    """Build a serialized engine (`build_plan`) and write it to `plan_path` (atomically)."""
    data, version = build_plan(onnx_path, input_shape=input_shape, batch_range=batch_range, workspace_mb=workspace_mb)
    path = atomic_write(plan_path, lambda tmp: tmp.write_bytes(data))
    return EngineReport(path, version, batch_range, workspace_mb, len(data))

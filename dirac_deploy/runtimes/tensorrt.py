"""The TensorRT engine (11.x API): serialized engines built from an ONNX graph, and a Runner over one.

TensorRT cannot be installed on our machines: this path is written against the 11.x API, imported only when
asked for (the error names the install command), and never shown with numbers. TensorRT 11 networks are
strongly typed: precision comes from the ONNX tensors, not from builder flags (BuilderFlag.FP16/INT8 are gone).
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .._optional import require
from ..errors import ExportError
from ..spec import INPUT_NAME, OUTPUT_NAME

MAX_BATCH = 4096  # Triton's max_batch_size and the TensorRT profile; larger batches belong to a data loader


@dataclass(frozen=True)
class BatchRange:
    """Optimization profile for the batch axis: min <= opt <= max."""

    min: int
    opt: int
    max: int

    @classmethod
    def parse(cls, text: str) -> BatchRange:
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


def load(model: Any) -> Any:
    """An ONNX ModelProto, as the engine is built from it per batch (a serialized graph is parsed first)."""
    if hasattr(model, "SerializeToString"):
        return model
    onnx = require("onnx")
    return onnx.load_from_string(bytes(model)) if isinstance(model, (bytes, bytearray)) else onnx.load(str(model))


class Runner:
    """An engine built for one batch (`batch`, required) from the ONNX graph, run on the current CUDA stream."""

    engine = "tensorrt"
    device = "cuda"

    def __init__(self, model: Any, *, threads: int | None = None, batch: int | None = None,
                 precision: str | None = None, device: str = "cuda", shared_cores: bool = False):  # noqa: ARG002
        import onnx

        if device != "cuda" or not batch:
            raise RuntimeError("the TensorRT runner runs on CUDA, for one batch size")
        trt = require("tensorrt")
        self.threads, self.batch, self.precision = threads, batch, precision
        shape = tuple(d.dim_value for d in model.graph.input[0].type.tensor_type.shape.dim[1:])
        with tempfile.TemporaryDirectory() as tmp:
            onnx.save(model, Path(tmp) / "m.onnx")
            plan, _ = build_plan(Path(tmp) / "m.onnx", input_shape=shape, batch_range=BatchRange(batch, batch, batch))
        self.engine_ = trt.Runtime(trt.Logger(trt.Logger.WARNING)).deserialize_cuda_engine(plan)
        self.context = self.engine_.create_execution_context()
        self.context.set_input_shape(INPUT_NAME, (batch, *shape))

    def bind(self, x: Any) -> Callable[[], object]:
        """The call to time on `x` (float32, the runner's batch; numpy is copied to the GPU here, once)."""
        import torch

        if isinstance(x, np.ndarray):
            x = torch.from_numpy(np.ascontiguousarray(x)).cuda()
        self._in = x  # the engine reads this memory on every call

        out = torch.empty(tuple(self.context.get_tensor_shape(OUTPUT_NAME)), device="cuda")
        self.context.set_tensor_address(INPUT_NAME, x.data_ptr())
        self.context.set_tensor_address(OUTPUT_NAME, out.data_ptr())
        stream = torch.cuda.current_stream().cuda_stream
        self._out = out
        return lambda: self.context.execute_async_v3(stream)

    def run(self, x: np.ndarray) -> np.ndarray:
        import torch

        call = self.bind(x)
        call()
        torch.cuda.synchronize()
        return self._out.cpu().numpy()

"""The ONNX Runtime engine: sessions, its Runner, and what its optimizer really runs.

Imports only onnxruntime (where used), so the torch-free serving path can use it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from .._optional import install_hint, require

INT8_CONV_OPS = {"QLinearConv", "ConvInteger"}
FP_CONV_OPS = {"Conv", "FusedConv"}
INT8_GEMM_OPS = {"QGemm", "QLinearMatMul", "MatMulInteger", "DynamicQuantizeMatMul"}
FP_GEMM_OPS = {"Gemm", "MatMul", "FusedGemm", "FusedMatMul"}


def load(model: Any) -> Any:
    """An ONNX graph as ONNX Runtime takes it: serialized bytes from a ModelProto; bytes and paths as they are."""
    if hasattr(model, "SerializeToString"):
        return model.SerializeToString()
    return bytes(model) if isinstance(model, (bytes, bytearray)) else str(model)


def unavailable(device: str) -> str | None:
    if device == "cuda":
        import onnxruntime as ort

        if "CUDAExecutionProvider" not in ort.get_available_providers():
            return f"onnxruntime has no CUDA provider here ({install_hint('onnxruntime-gpu')})"
    return None


def session(model: Any, *, threads: int | None = None, optimized: bool = True, device: str = "cpu",
            sequential: bool = True, spinning: bool = True, optimized_path: str | None = None):
    """An `onnxruntime.InferenceSession` for `model` (a ModelProto, serialized bytes or a path).

    Args:
        threads: intra-op threads (None or 0: ONNX Runtime's default, one per physical core).
        optimized: ONNX Runtime's default graph optimizations (all levels) or none at all
            (`ORT_DISABLE_ALL`: the graph runs op for op, which shows what an optimizer would have fused).
        device: "cpu", or "cuda" for the CUDA execution provider (raises RuntimeError when it is missing).
        sequential: run nodes one after another (a chain has no parallel branches; inter-op threads would idle).
        spinning: let idle intra-op threads spin for the next call (ONNX Runtime's default; lowest latency
            when it runs alone). Off where other runtimes share the cores, so idle threads do not steal them.
        optimized_path: write the graph as the optimizer left it there (`runtime_ops` counts it).
    """
    ort = require("onnxruntime")
    # ONNX Runtime's own ERROR lines would print before the one line our callers raise with its message
    ort.set_default_logger_severity(4)
    opts = ort.SessionOptions()
    opts.log_severity_level = 4
    opts.intra_op_num_threads = threads or 0
    if sequential:
        opts.inter_op_num_threads = 1
        opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    if not spinning:
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    if not optimized:
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    if optimized_path:
        opts.optimized_model_filepath = optimized_path
    reason = unavailable(device)
    if reason:
        raise RuntimeError(reason)
    providers = ["CUDAExecutionProvider"] if device == "cuda" else ["CPUExecutionProvider"]
    return ort.InferenceSession(load(model), opts, providers=providers)


class Runner:
    """A model on ONNX Runtime: one session, any batch (`batch` is recorded, not compiled for)."""

    engine = "onnxruntime"

    def __init__(self, model: Any, *, threads: int | None = None, batch: int | None = None,
                 precision: str | None = None, device: str = "cpu", optimized: bool = True,
                 shared_cores: bool = False):
        self.threads, self.batch, self.precision, self.device = threads, batch, precision, device
        # cores shared with runners timed in turn: idle threads must not spin and take them from the next one
        self.session = session(model, threads=threads, optimized=optimized, device=device, spinning=not shared_cores)
        self.input = self.session.get_inputs()[0].name
        self.output = self.session.get_outputs()[0].name

    def run(self, x: np.ndarray) -> np.ndarray:
        return np.asarray(self.session.run([self.output], {self.input: x})[0])

    def outputs(self, x: np.ndarray, names: list[str]) -> list[np.ndarray]:
        """The named tensors (a graph given extra outputs for per-layer comparisons)."""
        return [np.asarray(v) for v in self.session.run(names, {self.input: x})]

    def bind(self, x: Any) -> Callable[[], object]:
        if self.device == "cuda":  # the input stays on the GPU between calls, as a serving loop would keep it
            import onnxruntime as ort

            binding = self.session.io_binding()
            binding.bind_ortvalue_input(self.input, ort.OrtValue.ortvalue_from_numpy(np.asarray(x), "cuda", 0))
            binding.bind_output(self.output, "cuda")
            return lambda: self.session.run_with_iobinding(binding)
        feeds = {self.input: np.asarray(x)}
        return lambda: self.session.run([self.output], feeds)


def outputs(model: Any, x: np.ndarray, *, optimized: bool = True, names: list[str] | None = None,
            batch: int = 16) -> list[np.ndarray]:
    """`names` (default: the first graph output, the logits) of `model` in ONNX Runtime over `x`, in batches."""
    runner = Runner(load(model), optimized=optimized)
    names = names or [runner.output]
    chunks = [runner.outputs(x[i:i + batch], names) for i in range(0, len(x), batch)]
    return [np.concatenate([c[j] for c in chunks]) for j in range(len(names))]


def runtime_ops(model: Any) -> dict[str, dict[str, int]]:
    """What ONNX Runtime really runs: its optimized graph (all optimizations, CPU) with the convs and matrix
    products counted by arithmetic, {"conv": {"int8": n, "fp32": m}, "gemm": ...}. A QDQ pair the optimizer
    could not fuse leaves the conv in fp32 between a DequantizeLinear and a QuantizeLinear: it is counted as
    fp32, which is where it runs."""
    import tempfile
    from pathlib import Path

    import onnx

    with tempfile.TemporaryDirectory(prefix="dirac-deploy-ortopt-") as tmp:
        path = str(Path(tmp) / "optimized.onnx")
        session(model, optimized_path=path)
        graph = onnx.load(path).graph
    counts = {"conv": {"int8": 0, "fp32": 0}, "gemm": {"int8": 0, "fp32": 0}}
    for n in graph.node:
        for kind, int8_ops, fp_ops in (("conv", INT8_CONV_OPS, FP_CONV_OPS), ("gemm", INT8_GEMM_OPS, FP_GEMM_OPS)):
            if n.op_type in int8_ops:
                counts[kind]["int8"] += 1
            elif n.op_type in fp_ops:
                counts[kind]["fp32"] += 1
    return counts

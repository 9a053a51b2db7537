"""ONNX Runtime sessions, built in one place for export (parity), bench and serve.

Imports only onnxruntime, so the torch-free serving path can use it.
"""

from __future__ import annotations

from .spec import INPUT_NAME, OUTPUT_NAME

__all__ = ["INPUT_NAME", "OUTPUT_NAME", "ort_session"]


def ort_session(model, *, threads: int | None = None, optimized: bool = True, device: str = "cpu",
                sequential: bool = True):
    """An `onnxruntime.InferenceSession` for `model` (a ModelProto, serialized bytes or a path).

    Args:
        threads: intra-op threads (None or 0: ONNX Runtime's default, one per physical core).
        optimized: ONNX Runtime's default graph optimizations (all levels) or none at all
            (`ORT_DISABLE_ALL`: the graph runs op for op, which shows what an optimizer would have fused).
        device: "cpu", or "cuda" for the CUDA execution provider (raises RuntimeError when it is missing).
        sequential: run nodes one after another (a chain has no parallel branches; inter-op threads would idle).
    """
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    opts.intra_op_num_threads = threads or 0
    if sequential:
        opts.inter_op_num_threads = 1
        opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    if not optimized:
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    if device == "cuda":
        if "CUDAExecutionProvider" not in ort.get_available_providers():
            raise RuntimeError("onnxruntime has no CUDA provider here (pip install onnxruntime-gpu)")
        providers = ["CUDAExecutionProvider"]
    else:
        providers = ["CPUExecutionProvider"]
    source = model.SerializeToString() if hasattr(model, "SerializeToString") else (
        str(model) if not isinstance(model, (bytes, bytearray)) else bytes(model))
    return ort.InferenceSession(source, opts, providers=providers)

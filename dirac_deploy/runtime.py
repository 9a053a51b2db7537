"""ONNX Runtime sessions and OpenVINO compiled models, built in one place for export (parity), quantize, bench
and serve.

Imports only onnxruntime / openvino (each where used), so the torch-free serving path can use it.
"""

from __future__ import annotations

from ._optional import install_hint, require
from .spec import INPUT_NAME, OUTPUT_NAME

__all__ = ["INPUT_NAME", "OUTPUT_NAME", "openvino_compiled", "openvino_model", "ort_session"]


def ort_session(model, *, threads: int | None = None, optimized: bool = True, device: str = "cpu",
                sequential: bool = True, spinning: bool = True):
    """An `onnxruntime.InferenceSession` for `model` (a ModelProto, serialized bytes or a path).

    Args:
        threads: intra-op threads (None or 0: ONNX Runtime's default, one per physical core).
        optimized: ONNX Runtime's default graph optimizations (all levels) or none at all
            (`ORT_DISABLE_ALL`: the graph runs op for op, which shows what an optimizer would have fused).
        device: "cpu", or "cuda" for the CUDA execution provider (raises RuntimeError when it is missing).
        sequential: run nodes one after another (a chain has no parallel branches; inter-op threads would idle).
        spinning: let idle intra-op threads spin for the next call (ONNX Runtime's default; lowest latency
            when it runs alone). Off where other runtimes share the cores, so idle threads do not steal them.
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
    if device == "cuda":
        if "CUDAExecutionProvider" not in ort.get_available_providers():
            raise RuntimeError(f"onnxruntime has no CUDA provider here ({install_hint('onnxruntime-gpu')})")
        providers = ["CUDAExecutionProvider"]
    else:
        providers = ["CPUExecutionProvider"]
    source = model.SerializeToString() if hasattr(model, "SerializeToString") else (
        str(model) if not isinstance(model, (bytes, bytearray)) else bytes(model))
    return ort.InferenceSession(source, opts, providers=providers)


def openvino_model(model):
    """An `openvino.Model` from an ONNX ModelProto, serialized ONNX bytes, a path (.onnx or an IR's .xml), or
    an `openvino.Model` (returned as it is)."""
    import tempfile
    from pathlib import Path

    ov = require("openvino")
    if isinstance(model, ov.Model):
        return model
    if isinstance(model, (str, Path)):
        return ov.Core().read_model(str(model))
    with tempfile.TemporaryDirectory(prefix="dirac-deploy-ov-") as tmp:
        path = Path(tmp) / "model.onnx"
        path.write_bytes(model.SerializeToString() if hasattr(model, "SerializeToString") else bytes(model))
        return ov.Core().read_model(str(path))


def openvino_compiled(model, *, threads: int | None = None, batch: int | None = None, precision: str | None = "f32"):
    """An OpenVINO model compiled for the CPU (`model` as `openvino_model` takes it; an `openvino.Model` is
    reshaped in place when `batch` is given, so pass a clone to keep the original).

    Args:
        threads: inference threads (None: OpenVINO's default).
        batch: fix the batch axis (static shapes run faster; None keeps it as the model has it).
        precision: the CPU plugin's inference precision hint: "f32" (exact fp32 compute), "bf16" (its default
            on CPUs with AVX-512 BF16 / AMX, which rounds activations and weights to bfloat16), or None for what
            the model records in its `runtime_options` (an IR from `quantize`), else the plugin's default.
    """
    ov = require("openvino")
    net = openvino_model(model)
    if batch is not None:
        shape = [batch, *[d.get_length() for d in list(net.inputs[0].get_partial_shape())[1:]]]
        net.reshape({net.inputs[0]: shape})
    config = {"PERFORMANCE_HINT": "LATENCY"}
    recorded = ["runtime_options", "INFERENCE_PRECISION_HINT"]
    if precision is None and net.has_rt_info(recorded):
        # compile_model does not apply an IR's runtime_options by itself (OpenVINO 2026.4: an IR recording f32
        # compiled to bf16 on an AMX CPU), so the recorded hint is passed explicitly.
        precision = net.get_rt_info(recorded).astype(str)
    if precision is not None:
        config["INFERENCE_PRECISION_HINT"] = precision
    if threads:
        config["INFERENCE_NUM_THREADS"] = int(threads)
    return ov.Core().compile_model(net, "CPU", config)

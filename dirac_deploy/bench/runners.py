"""One runner per backend: prepare a variant for a batch size, hand back a zero-argument call to time.

A backend that cannot run here raises `Skip(reason)`; the benchmark records `skipped: <reason>`, never a
number. Backends:
- `torch`: eager PyTorch (inference mode).
- `torch-compile`: `torch.compile` with inductor and `freezing=True` (weights folded as constants), one
  static shape per batch; on CUDA also `torch-compile-max` (mode="max-autotune"). Compile time is the prepare.
- `cuda-graph`: eager PyTorch captured in a CUDA graph (CUDA only).
- `onnxruntime` / `onnxruntime-noopt`: ONNX Runtime with its default graph optimizations / with none.
- `openvino`: OpenVINO's CPU plugin at its default inference precision (see `quantize` for its int8 flow).
- `tensorrt`: an engine built from the ONNX graph (CUDA only; TensorRT is not installable on our machines).
"""

from __future__ import annotations

import importlib.util
import tempfile
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from .._optional import available, install_hint, not_installed
from ..errors import first_line
from ..runtime import INPUT_NAME, OUTPUT_NAME, ort_session
from . import ALL_BACKENDS, CPU_BACKENDS, CUDA_BACKENDS, ONNX_BACKENDS, TORCH_BACKENDS
from .formats import NumericFormat

FP32 = NumericFormat("fp32")

__all__ = ["ALL_BACKENDS", "CPU_BACKENDS", "CUDA_BACKENDS", "Skip", "default_backends", "prepare", "sync_for",
           "unavailable"]


class Skip(Exception):
    """This (variant, backend, device) cannot run here; the message says why."""


def default_backends(device: str) -> tuple[str, ...]:
    backends = CUDA_BACKENDS if device == "cuda" else CPU_BACKENDS
    return tuple(b for b in backends if b != "openvino" or available("openvino"))


def unavailable(backend: str, device: str) -> str | None:
    """Why `backend` cannot run on `device` here at all (None: it may), found without building anything, so a
    run does not export ONNX graphs for a runtime that is not installed."""
    if backend in ("cuda-graph", "torch-compile-max", "tensorrt") and device != "cuda":
        return f"{backend} is a CUDA backend"
    if backend == "openvino" and device != "cpu":
        return "the OpenVINO backend runs on the CPU here"
    if backend in ("onnxruntime", "onnxruntime-noopt"):
        if not available("onnxruntime"):
            return not_installed("onnxruntime")
        if device == "cuda":
            import onnxruntime as ort

            if "CUDAExecutionProvider" not in ort.get_available_providers():
                return f"onnxruntime has no CUDA provider here ({install_hint('onnxruntime-gpu')})"
    if backend == "openvino" and not available("openvino"):
        return not_installed("openvino", "OpenVINO")
    if backend == "tensorrt" and importlib.util.find_spec("tensorrt") is None:
        return not_installed("tensorrt", "TensorRT")
    return None


def sync_for(device: str) -> Callable[[], None]:
    return torch.cuda.synchronize if device == "cuda" else (lambda: None)


def _torch_call(model: torch.nn.Module, x: torch.Tensor) -> Callable[[], object]:
    def call():
        with torch.inference_mode():
            return model(x)
    return call


def _compiled_call(model: torch.nn.Module, x: torch.Tensor, mode: str | None) -> Callable[[], object]:
    """torch.compile with freezing (parameters become constants the compiler can fold), compiled on the
    first call here so that the compile is part of prepare, not of the timed calls."""
    import torch._inductor.config as inductor_config

    with torch.no_grad(), inductor_config.patch(freezing=True):
        compiled = torch.compile(model, dynamic=False, mode=mode)
        compiled(x)

    def call():
        with torch.no_grad(), inductor_config.patch(freezing=True):
            return compiled(x)
    return call


def _cuda_graph_call(model: torch.nn.Module, x: torch.Tensor) -> Callable[[], object]:
    # Capture after warm-up on a side stream, as the CUDA graphs docs prescribe; replay reuses x's memory.
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream), torch.inference_mode():
        for _ in range(3):
            model(x)
    torch.cuda.current_stream().wait_stream(stream)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph), torch.inference_mode():
        model(x)
    return graph.replay


def _ort_call(model, x: np.ndarray, device: str, threads: int, optimized: bool):
    if not available("onnxruntime"):
        raise Skip(not_installed("onnxruntime"))
    try:
        session = ort_session(model, threads=threads, optimized=optimized, device=device)
    except RuntimeError as e:
        raise Skip(str(e)) from None
    if device == "cuda":
        import onnxruntime as ort

        binding = session.io_binding()
        binding.bind_ortvalue_input(INPUT_NAME, ort.OrtValue.ortvalue_from_numpy(x, "cuda", 0))
        binding.bind_output(OUTPUT_NAME, "cuda")
        return lambda: session.run_with_iobinding(binding)
    return lambda: session.run([OUTPUT_NAME], {INPUT_NAME: x})


def _openvino_call(model, x: np.ndarray, threads: int):
    if not available("openvino"):
        raise Skip(not_installed("openvino", "OpenVINO"))
    from ..runtime import openvino_compiled

    compiled = openvino_compiled(model, threads=threads, batch=x.shape[0])
    request = compiled.create_infer_request()
    return lambda: request.infer({0: x})


def _tensorrt_call(model, x: torch.Tensor):
    if importlib.util.find_spec("tensorrt") is None:
        raise Skip(not_installed("tensorrt", "TensorRT"))
    import onnx
    import tensorrt as trt

    from ..export.tensorrt import BatchRange, build_engine

    b = x.shape[0]
    with tempfile.TemporaryDirectory() as tmp:
        onnx.save(model, Path(tmp) / "m.onnx")
        build_engine(Path(tmp) / "m.onnx", Path(tmp) / "m.plan", input_shape=tuple(x.shape[1:]),
                     batch_range=BatchRange(b, b, b))
        plan = (Path(tmp) / "m.plan").read_bytes()
    logger = trt.Logger(trt.Logger.WARNING)
    engine = trt.Runtime(logger).deserialize_cuda_engine(plan)
    context = engine.create_execution_context()
    context.set_input_shape(INPUT_NAME, tuple(x.shape))
    out = torch.empty(tuple(context.get_tensor_shape(OUTPUT_NAME)), device="cuda")
    context.set_tensor_address(INPUT_NAME, x.data_ptr())
    context.set_tensor_address(OUTPUT_NAME, out.data_ptr())
    stream = torch.cuda.current_stream().cuda_stream
    return lambda: context.execute_async_v3(stream)


def prepare(backend: str, device: str, variant, input_shape: tuple[int, int, int], batch: int,
            threads: int, fmt: NumericFormat = FP32) -> Callable[[], object]:
    """A zero-argument call running `batch` seeded images through `variant` on `backend`, inputs preallocated,
    in numeric format `fmt` (PyTorch backends; ONNX backends run the fp32 graph).

    Raises:
        Skip: the backend does not apply to this variant or device, or is not installed.
    """
    if device == "cuda" and not torch.cuda.is_available():
        raise Skip("no CUDA device is visible to torch")
    gen = torch.Generator().manual_seed(batch)
    x = torch.randn(batch, *input_shape, generator=gen)
    if backend in ONNX_BACKENDS:
        if not fmt.is_reference:
            raise Skip(f"{backend} runs the fp32 ONNX graph; its low precision is `bench --precision`")
        if variant.onnx is None:
            raise Skip(variant.missing or "no ONNX graph for this variant")
        if backend in ("onnxruntime", "onnxruntime-noopt"):
            return _ort_call(variant.onnx, x.numpy(), device, threads, optimized=backend == "onnxruntime")
        if backend == "openvino":
            if device != "cpu":
                raise Skip("the OpenVINO backend runs on the CPU here")
            return _openvino_call(variant.onnx, x.numpy(), threads)
        if device != "cuda":
            raise Skip(f"{backend} is a CUDA backend")
        return _tensorrt_call(variant.onnx, x.to(device))
    if backend not in TORCH_BACKENDS:
        raise ValueError(f"unknown backend {backend!r}; choose from {', '.join(ALL_BACKENDS)}")
    if variant.model is None:
        raise Skip(variant.missing or "an ONNX-only variant: it runs on the ONNX backends")
    if backend in ("cuda-graph", "torch-compile-max") and device != "cuda":
        raise Skip(f"{backend} is a CUDA backend")
    model, xd = fmt.apply(variant.model.to(device).eval(), x.to(device))
    if backend == "torch":
        return _torch_call(model, xd)
    if backend in ("torch-compile", "torch-compile-max"):
        try:
            return _compiled_call(model, xd, "max-autotune" if backend == "torch-compile-max" else None)
        except Exception as e:  # inductor needs a C++ compiler on CPU; its failures have many types
            first = first_line(e)
            raise Skip(f"torch.compile failed here: {first[:200]}") from None
    return _cuda_graph_call(model, xd)

"""One runner per backend: prepare a model for a batch size, hand back a zero-argument call to time.

A backend that cannot run here raises `Skip(reason)`; the benchmark records `skipped: <reason>`, never a
number. TensorRT, torch.compile and CUDA graphs are GPU backends; ONNX Runtime uses its CUDA provider on GPU.
"""

from __future__ import annotations

import importlib.util
import tempfile
from pathlib import Path
from typing import Callable

import numpy as np
import onnx
import torch

from ..runtime import INPUT_NAME, OUTPUT_NAME, ort_session

CPU_BACKENDS = ("torch", "onnxruntime", "onnxruntime-noopt")
CUDA_BACKENDS = ("torch", "torch-compile", "cuda-graph", "onnxruntime", "onnxruntime-noopt", "tensorrt")
ALL_BACKENDS = CUDA_BACKENDS


class Skip(Exception):
    """This (variant, backend, device) cannot run here; the message says why."""


def default_backends(device: str) -> tuple[str, ...]:
    return CUDA_BACKENDS if device == "cuda" else CPU_BACKENDS


def sync_for(device: str) -> Callable[[], None]:
    return torch.cuda.synchronize if device == "cuda" else (lambda: None)


def _torch_call(model: torch.nn.Module, x: torch.Tensor) -> Callable[[], object]:
    def call():
        with torch.inference_mode():
            return model(x)
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


def _ort_call(model: onnx.ModelProto, x: np.ndarray, device: str, threads: int, optimized: bool):
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


def _tensorrt_call(model: onnx.ModelProto, x: torch.Tensor):
    if importlib.util.find_spec("tensorrt") is None:
        raise Skip("TensorRT is not installed (pip install tensorrt-cu13)")
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


def prepare(backend: str, device: str, model: torch.nn.Module, onnx_model: onnx.ModelProto | None,
            input_shape: tuple[int, int, int], batch: int, threads: int) -> Callable[[], object]:
    """A zero-argument call running `batch` images through `model` on `backend`, inputs preallocated."""
    if device == "cuda" and not torch.cuda.is_available():
        raise Skip("no CUDA device is visible to torch")
    gen = torch.Generator().manual_seed(batch)
    x = torch.randn(batch, *input_shape, generator=gen)
    if backend in ("onnxruntime", "onnxruntime-noopt"):
        if onnx_model is None:
            raise Skip("no ONNX graph for this variant")
        return _ort_call(onnx_model, x.numpy(), device, threads, optimized=backend == "onnxruntime")
    if backend in ("torch-compile", "cuda-graph", "tensorrt") and device != "cuda":
        raise Skip(f"{backend} is a CUDA backend")
    xd = x.to(device)
    model = model.to(device).eval()
    if backend == "torch":
        return _torch_call(model, xd)
    if backend == "torch-compile":
        return _torch_call(torch.compile(model, dynamic=False), xd)
    if backend == "cuda-graph":
        return _cuda_graph_call(model, xd)
    if backend == "tensorrt":
        if onnx_model is None:
            raise Skip("no ONNX graph for this variant")
        return _tensorrt_call(onnx_model, xd)
    raise ValueError(f"unknown backend {backend!r}; choose from {', '.join(ALL_BACKENDS)}")

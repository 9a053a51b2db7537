"""One runner per backend: prepare a variant for a batch size, hand back a zero-argument call to time.

A backend that cannot run here raises `Skip(reason)`; the benchmark records `skipped: <reason>`, never a
number. Backends:
- `torch`: eager PyTorch (inference mode).
- `torch-compile`: `torch.compile` with inductor and `freezing=True` (weights folded as constants), one
  static shape per batch; on CUDA also `torch-compile-max` (mode="max-autotune"). Compile time is the prepare.
- `cuda-graph`: eager PyTorch captured in a CUDA graph (CUDA only).
- `onnxruntime` / `onnxruntime-noopt`: ONNX Runtime with its default graph optimizations / with none.
- `openvino`: OpenVINO's CPU plugin at its default inference precision (see `quantize` for its int8 flow).
- `executorch` / `litert`: the variant lowered to an ExecuTorch / LiteRT program (XNNPACK) for this batch size
  and run by that runtime; a variant XNNPACK does not take whole runs its rest on the runtime's own kernels
  (the call carries the program's `delegation`, which the record and its warnings show). Lowering is the
  prepare.
- `tensorrt`: an engine built from the ONNX graph (CUDA only; TensorRT is not installable on our machines).
"""

from __future__ import annotations

from typing import Callable

import torch

from .. import runtimes
from ..errors import first_line
from . import (
    ALL_BACKENDS,
    BACKENDS,
    CPU_BACKENDS,
    CUDA_BACKENDS,
    CUDA_ONLY,
    ONNX_BACKENDS,
    OPTIONAL_BACKENDS,
    PROGRAM_BACKENDS,
)
from .formats import NumericFormat

FP32 = NumericFormat("fp32")

__all__ = ["ALL_BACKENDS", "CPU_BACKENDS", "CUDA_BACKENDS", "Skip", "default_backends", "partly_delegated", "prepare", "sync_for",
           "unavailable"]


class Skip(Exception):
    """This (variant, backend, device) cannot run here; the message says why."""


def default_backends(device: str) -> tuple[str, ...]:
    backends = CUDA_BACKENDS if device == "cuda" else CPU_BACKENDS
    return tuple(b for b in backends if b not in OPTIONAL_BACKENDS or not runtimes.unavailable(BACKENDS[b][0]))


def unavailable(backend: str, device: str) -> str | None:
    """Why `backend` cannot run on `device` here at all (None: it may), found without building anything, so a
    run does not export ONNX graphs for a runtime that is not installed."""
    if backend in CUDA_ONLY and device != "cuda":
        return f"{backend} is a CUDA backend"
    return runtimes.unavailable(BACKENDS[backend][0], device)


def sync_for(device: str) -> Callable[[], None]:
    return torch.cuda.synchronize if device == "cuda" else (lambda: None)


def prepare(backend: str, device: str, variant, input_shape: tuple[int, int, int], batch: int,
            threads: int, fmt: NumericFormat = FP32) -> Callable[[], object]:
    """A zero-argument call running `batch` seeded images through `variant` on `backend`, inputs preallocated,
    in numeric format `fmt` (PyTorch backends; ONNX backends run the fp32 graph). The runner is built by
    `runtimes.build` (the engine and its settings from `BACKENDS`); building and `bind` are the prepare.

    Raises:
        Skip: the backend does not apply to this variant or device, or is not installed.
    """
    if backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r}; choose from {', '.join(ALL_BACKENDS)}")
    if device == "cuda" and not torch.cuda.is_available():
        raise Skip("no CUDA device is visible to torch")
    why_not = unavailable(backend, device)
    if why_not:
        raise Skip(why_not)
    engine, options = BACKENDS[backend]
    gen = torch.Generator().manual_seed(batch)
    x = torch.randn(batch, *input_shape, generator=gen)
    if backend in ONNX_BACKENDS:
        if not fmt.is_reference:
            raise Skip(f"{backend} runs the fp32 ONNX graph; its low precision is `bench --precision`")
        if variant.onnx is None:
            raise Skip(variant.missing or "no ONNX graph for this variant")
        try:
            runner = runtimes.build(engine, variant.onnx, threads=threads, batch=batch, precision="fp32",
                                    device=device, **options)
        except RuntimeError as e:  # a runtime that cannot run here after all (a provider missing)
            raise Skip(first_line(e)) from None
        return runner.bind(x.numpy())
    if variant.model is None:
        raise Skip(variant.missing or "an ONNX-only variant: it runs on the ONNX backends")
    if backend in PROGRAM_BACKENDS:
        if not fmt.is_reference:
            raise Skip(f"{backend} runs the fp32 program; its low precision is not built yet")
        from ..errors import ExportError
        from ..export.program import lower_program

        try:
            prog = lower_program(engine, variant.model.eval(), input_shape, batch)
        except ExportError as e:  # a variant the stack cannot lower (an op torch.export or XNNPACK rejects)
            raise Skip(str(e)) from None
        call = runtimes.build(engine, prog.data, threads=threads).bind(x.numpy())
        call.delegation = prog.delegation()  # type: ignore[attr-defined]  # what the record reports
        return call
    model, xd = fmt.apply(variant.model.to(device).eval(), x.to(device))
    runner = runtimes.build(engine, model, threads=None, batch=batch, device=device, **options)
    try:
        return runner.bind(xd)
    except Exception as e:  # inductor needs a C++ compiler on CPU; its failures have many types
        if not options.get("compile"):
            raise
        raise Skip(f"torch.compile failed here: {first_line(e)[:200]}") from None


def partly_delegated(rec: dict, where: str) -> list[str]:
    """A lowered program whose delegate left ops out runs them on the runtime's own, much slower kernels: its
    time is not XNNPACK's, and the warning says so next to it."""
    rest = (rec.get("delegation") or {}).get("not_delegated") or {}
    if not rest:
        return []
    ops = ", ".join(f"{op} x{n}" for op, n in sorted(rest.items()))
    return [f"{where}: XNNPACK runs {rec['delegation'].get('delegated', 0)} ops, the runtime's own kernels {ops}"]

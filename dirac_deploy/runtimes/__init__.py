"""One Runner per engine: everything that runs a model (serve, bench, quantize's proofs and speed proof, the
artifact checks) builds its runner here, with `build(engine, model, ...)`, and nowhere else.

`ENGINE_TABLE` is the one list of engines. Serve's --runtime choices (`SERVING`), the runtimes an artifact kind
can be served on (`served_on`), bench's backends and quantize's targets (`ONNX_ENGINES`) are read from it. A
new runtime is one module under `runtimes/` (a `load(model)` and a `Runner` class) and one row here
(docs/layout.md, "How to add a runtime"). This module imports no runtime: an engine's module is imported when
one of its runners is built, so the command line lists engines without loading any of them.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np


class Runner(Protocol):
    """A model loaded on one engine: `run(x) -> logits` for a float32 NCHW batch, and `bind(x)`, a zero-argument
    call on a preallocated input for timing. Built with the settings it records."""

    engine: str
    device: str  # "cpu" or "cuda"
    threads: int | None  # intra-op threads (None: the engine's default)
    batch: int | None  # the batch the model was compiled for (None: any); `run` takes any length either way
    precision: str | None  # what the artifact is ("fp32", "bf16", "int8", ...; None: what the file records)

    def run(self, x: np.ndarray) -> np.ndarray: ...

    def bind(self, x: Any) -> Callable[[], object]: ...


@dataclass(frozen=True)
class Engine:
    """An engine: its name on the command line and in reports, its name for people, the module holding its
    `load` and `Runner`, the package it needs, the kinds of model file it runs ("onnx", "openvino-ir",
    "torch", "pte", "tflite"), its devices, and whether the server may run it."""

    name: str
    label: str
    module: str
    package: str
    reads: tuple[str, ...]
    devices: tuple[str, ...] = ("cpu",)
    serves: bool = True
    static_batch: bool = False  # compiled per batch size (faster): a runner per batch where that matters
    lowered: bool = False  # runs a program lowered from the PyTorch chain for one batch size (an edge runtime)


ENGINE_TABLE: dict[str, Engine] = {e.name: e for e in (
    Engine("onnxruntime", "ONNX Runtime", "dirac_deploy.runtimes.onnxruntime", "onnxruntime", ("onnx",),
           ("cpu", "cuda")),
    Engine("openvino", "OpenVINO", "dirac_deploy.runtimes.openvino", "openvino", ("onnx", "openvino-ir"),
           static_batch=True),
    Engine("torch", "PyTorch", "dirac_deploy.runtimes.torch", "torch", ("torch",), ("cpu", "cuda")),
    Engine("executorch", "ExecuTorch (XNNPACK)", "dirac_deploy.runtimes.executorch", "executorch", ("pte",),
           lowered=True),
    Engine("litert", "LiteRT (XNNPACK)", "dirac_deploy.runtimes.litert", "ai_edge_litert", ("tflite",), lowered=True),
    # TensorRT is not installable on our machines: its runner is written against the 11.x API and never timed here
    Engine("tensorrt", "TensorRT", "dirac_deploy.runtimes.tensorrt", "tensorrt", ("onnx",), ("cuda",),
           serves=False),
)}


def _names(keep: Callable[[Engine], bool]) -> tuple[str, ...]:
    return tuple(e.name for e in ENGINE_TABLE.values() if keep(e))


ENGINES = tuple(ENGINE_TABLE)
SERVING = _names(lambda e: e.serves)  # serve's --runtime choices
ONNX_ENGINES = _names(lambda e: "onnx" in e.reads)  # quantize's targets: the engines that run an ONNX graph
LOWERED_ENGINES = _names(lambda e: e.lowered)  # and those that run a program lowered from the chain


def register(engine: Engine) -> None:
    """Add (or replace) an engine row: what a new runtime's module does, or a test with a toy engine. The name
    lists above are the shipped engines; `engines()` reads the table as it is now."""
    ENGINE_TABLE[engine.name] = engine


def engines(*, serving: bool | None = None, reads: str | None = None) -> tuple[str, ...]:
    """Engine names in the table's order, optionally only those that serve and / or run a kind of file."""
    return _names(lambda e: (serving is None or e.serves == serving) and (reads is None or reads in e.reads))


def engine(name: str) -> Engine:
    """The engine named `name`. Raises ValueError listing the engines."""
    try:
        return ENGINE_TABLE[name]
    except KeyError:
        raise ValueError(f"unknown engine {name!r}; choose from {', '.join(ENGINE_TABLE)}") from None


def served_on(kind: str) -> tuple[str, ...]:
    """The serving engines for a kind of model file, the default first: those that run it; a PyTorch file
    (folded and exported in memory before it is served) on every serving engine."""
    return engines(serving=True) if kind == "torch" else engines(serving=True, reads=kind)


def unavailable(name: str, device: str = "cpu") -> str | None:
    """Why `name` cannot run on `device` here (None: it may), found without building anything: the device,
    then the package (with its install command), then the engine module's own check (a CUDA provider)."""
    from .._optional import available, not_installed

    e = engine(name)
    if device not in e.devices:
        return f"{e.label} runs on {' or '.join(e.devices)} here, not {device}"
    if not available(e.package):
        return not_installed(e.package, e.label)
    check = getattr(_module(e), "unavailable", None)
    return check(device) if check is not None else None


def _module(e: Engine):
    return importlib.import_module(e.module)


def load(name: str, model: Any) -> Any:
    """`model` in the form the engine builds runners from, loaded once (an ONNX graph as bytes for ONNX Runtime,
    an `openvino.Model` for OpenVINO, a module for PyTorch); what `load` returns, `load` returns as it is."""
    return _module(engine(name)).load(model)


def build(name: str, model: Any, *, threads: int | None = None, batch: int | None = None,
          precision: str | None = None, device: str = "cpu", **options: Any) -> Runner:
    """A runner of `model` (anything the engine's `load` takes) on engine `name`.

    Args:
        threads: intra-op threads (None: the engine's default).
        batch: compile for this batch (engines with static shapes run faster so); None: any batch.
        precision: what the artifact is: "fp32" runs in exact fp32, "bf16" asks for bf16 compute, None (and
            "int8") runs what the file records, else the engine's default (`openvino.hint_for`, the one rule).
        device: "cpu" or "cuda".
        options: `shared_cores=True` where other runners are timed in turn on the same cores (ONNX Runtime's
            idle threads then stop spinning; OpenVINO has no such setting), and the engine's own (ONNX Runtime:
            `optimized`; PyTorch: `compile`, `cuda_graph`).
    """
    module = _module(engine(name))
    return module.Runner(module.load(model), threads=threads, batch=batch, precision=precision, device=device,
                         **options)


def for_batches(name: str, model: Any, **settings: Any) -> Callable[[int], Runner]:
    """batch -> runner of `model` on `name`, loaded once: one runner for every batch where the engine takes
    any, one compiled per batch (and kept) where it compiles static shapes (`Engine.static_batch`)."""
    loaded = load(name, model)
    static = engine(name).static_batch
    cache: dict[int | None, Runner] = {}

    def runner(batch: int) -> Runner:
        key = batch if static else None
        if key not in cache:
            cache[key] = build(name, loaded, batch=key, **settings)
        return cache[key]
    return runner


def run_batched(runner: Runner, x: np.ndarray, batch: int = 16) -> np.ndarray:
    """Logits for all of `x`, `batch` images per call (the runner's own batch where it has one; the last
    call padded with zeros to it, and the padding's logits dropped)."""
    step = runner.batch or batch
    out = []
    for i in range(0, len(x), step):
        chunk = x[i:i + step]
        pad = step - len(chunk) if runner.batch else 0
        if pad:
            chunk = np.concatenate([chunk, np.zeros((pad, *chunk.shape[1:]), chunk.dtype)])
        out.append(np.asarray(runner.run(chunk))[: len(chunk) - pad])
    return np.concatenate(out)


def logits(name: str, model: Any, x: np.ndarray, *, batch: int = 16, **settings: Any) -> np.ndarray:
    """`model`'s logits for all of `x` on engine `name` (`run_batched`; compiled for `batch` where the engine
    compiles static shapes). `settings` as `build` takes them."""
    runner = build(name, model, batch=batch if engine(name).static_batch else None, **settings)
    return run_batched(runner, x, batch)


def runtime_ops(name: str, model: Any) -> dict[str, dict[str, int]]:
    """What engine `name` really runs of `model`: its optimized / runtime graph's convs and matrix products
    counted by the arithmetic they run in, {"conv": {"int8": n, "fp32": m, ...}, "gemm": {...}}.

    Raises:
        ValueError: the engine cannot say (it has no `runtime_ops`).
    """
    count = getattr(_module(engine(name)), "runtime_ops", None)
    if count is None:
        raise ValueError(f"{engine(name).label} does not report the precision its ops run in")
    return count(model)

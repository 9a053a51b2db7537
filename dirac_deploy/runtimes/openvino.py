"""The OpenVINO engine (CPU plugin): models, compiled models, its Runner, the precision-hint rule, and what
its runtime model really runs.

Imports only openvino (where used), so the torch-free serving path can use it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from .._optional import require

HINT = "INFERENCE_PRECISION_HINT"
RECORDED = ["runtime_options", HINT]


def hint_for(precision: str | None) -> str | None:
    """The CPU plugin's inference precision hint for an artifact of `precision`, the one rule: "fp32" runs in
    exact f32 (the plugin's default on a BF16 / AMX CPU would be bf16), "bf16" asks for bf16, anything else
    (None, "int8") passes no hint: what the model records in its `runtime_options`, else the plugin's default,
    which is how `quantize` proved an int8 IR (its layers kept out of int8 run at that default)."""
    return {"fp32": "f32", "bf16": "bf16"}.get(precision or "")


def load(model: Any) -> Any:
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


def compiled(model: Any, *, threads: int | None = None, batch: int | None = None, hint: str | None = "f32"):
    """`model` (as `load` takes it; an `openvino.Model` is reshaped in place when `batch` is given, so pass a
    clone to keep the original) compiled for the CPU with the plugin's precision `hint` ("f32", "bf16", or
    None: what the model records, else the plugin's default)."""
    ov = require("openvino")
    net = load(model)
    if batch is not None:
        shape = [batch, *[d.get_length() for d in list(net.inputs[0].get_partial_shape())[1:]]]
        net.reshape({net.inputs[0]: shape})
    config: dict[str, Any] = {"PERFORMANCE_HINT": "LATENCY"}
    if hint is None and net.has_rt_info(RECORDED):
        # compile_model does not apply an IR's runtime_options by itself (OpenVINO 2026.4: an IR recording f32
        # compiled to bf16 on an AMX CPU), so the recorded hint is passed explicitly.
        hint = net.get_rt_info(RECORDED).astype(str)
    if hint is not None:
        config[HINT] = hint
    if threads:
        config["INFERENCE_NUM_THREADS"] = int(threads)
    return ov.Core().compile_model(net, "CPU", config)


def record_hint(model: Any, hint: str | None) -> Any:
    """Record the CPU inference precision hint ("f32" or "bf16") in the model's runtime options (None: none
    recorded, so the plugin's default applies, as `hint_for` says)."""
    if hint is not None:
        model.set_rt_info(hint, RECORDED)
    return model


def bf16_supported() -> bool:
    ov = require("openvino")
    return "BF16" in ov.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES")


class Runner:
    """A model compiled by OpenVINO's CPU plugin, for `batch` (static shapes run faster) or any batch; the
    caller's `openvino.Model` is cloned, never reshaped."""

    engine = "openvino"
    device = "cpu"

    def __init__(self, model: Any, *, threads: int | None = None, batch: int | None = None,
                 precision: str | None = None, device: str = "cpu", shared_cores: bool = False):  # noqa: ARG002
        # shared_cores: accepted as every engine accepts it; the plugin's threads are left as they are (whether they
        # spin between calls and take cores from the runner timed next was not measured)
        if device != "cpu":
            raise RuntimeError(f"the OpenVINO runner runs on the CPU here, not {device}")
        self.threads, self.batch, self.precision = threads, batch, precision
        self.compiled = compiled(model.clone(), threads=threads, batch=batch, hint=hint_for(precision))
        self.request = self.compiled.create_infer_request()

    def run(self, x: np.ndarray) -> np.ndarray:
        return np.array(self.request.infer({0: np.ascontiguousarray(x)})[0])

    def bind(self, x: Any) -> Callable[[], object]:
        x = np.ascontiguousarray(x)
        return lambda: self.request.infer({0: x})


def runtime_ops(model: Any) -> dict[str, dict[str, int]]:
    """What OpenVINO's CPU plugin really runs: the compiled model's runtime graph (`get_runtime_model()`), its
    Convolution and FullyConnected nodes counted by `runtimePrecision`: {"conv": {"int8": n, "fp32": m}, ...}
    (i8/u8 count as int8; anything else, f32 or bf16 included, as not int8 under its own name)."""
    net = compiled(load(model).clone(), batch=1, hint=None)
    counts: dict[str, dict[str, int]] = {"conv": {"int8": 0}, "gemm": {"int8": 0}}
    for op in net.get_runtime_model().get_ordered_ops():
        info = op.get_rt_info()
        kind = {"Convolution": "conv", "FullyConnected": "gemm"}.get(str(info["layerType"].astype(str)))
        if kind is None:
            continue
        precision = str(info["runtimePrecision"].astype(str))
        key = "int8" if precision in ("i8", "u8") else {"f32": "fp32"}.get(precision, precision)
        counts[kind][key] = counts[kind].get(key, 0) + 1
    return counts

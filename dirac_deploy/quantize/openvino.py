"""OpenVINO artifacts: the IR of the fp32 chain (run at fp32 or bf16) and NNCF's int8 flow.

bf16 in OpenVINO is a property of how the CPU plugin runs a model (`INFERENCE_PRECISION_HINT`), not of the
IR's weights; the IR records the hint in its `runtime_options`, which `compile_model` applies. On a CPU
without bf16 support the plugin runs such a model in fp32: `bf16_supported()` tells, and the proof then says
it ran in fp32.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .._optional import require

HINT = "INFERENCE_PRECISION_HINT"


def bf16_supported() -> bool:
    ov = require("openvino")
    return "BF16" in ov.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES")


def with_precision(model, precision: str):
    """Record the CPU inference precision ("f32" or "bf16") in the model's runtime options."""
    model.set_rt_info(precision, ["runtime_options", HINT])
    return model


def nncf_int8(onnx_model, calib: np.ndarray):
    """NNCF's post-training int8 quantization of the graph (its default preset), on `calib`."""
    import contextlib
    import io
    import logging

    nncf = require("nncf")
    from ..runtime import openvino_model

    model = openvino_model(onnx_model)
    dataset = nncf.Dataset([calib[i:i + 1] for i in range(len(calib))])
    nncf.set_log_level(logging.ERROR)
    # NNCF draws progress bars on stdout, which `--json -` owns; the command shows its own progress.
    with contextlib.redirect_stdout(io.StringIO()):
        return nncf.quantize(model, dataset, subset_size=len(calib))


def run(model, x: np.ndarray, batch: int = 8, precision: str | None = None) -> np.ndarray:
    """Logits for `x` (in batches of `batch`; the last one padded)."""
    from ..runtime import openvino_compiled

    net = openvino_compiled(model.clone(), batch=batch, precision=precision)
    request = net.create_infer_request()
    out = []
    for i in range(0, len(x), batch):
        chunk = x[i:i + batch]
        pad = batch - len(chunk)
        if pad:
            chunk = np.concatenate([chunk, np.zeros((pad, *chunk.shape[1:]), chunk.dtype)])
        out.append(np.asarray(request.infer({0: chunk})[0])[: batch - pad])
    return np.concatenate(out)


def save_ir(model, xml_path: Path) -> None:
    """model.xml + model.bin (weights as they are: no fp16 compression)."""
    ov = require("openvino")
    ov.save_model(model, str(xml_path), compress_to_fp16=False)


def int8_ops(model) -> dict[str, dict[str, int]]:
    """What OpenVINO's CPU plugin really runs: the compiled model's runtime graph (`get_runtime_model()`), its
    Convolution and FullyConnected nodes counted by `runtimePrecision`: {"conv": {"int8": n, "fp32": m}, ...}
    (i8/u8 count as int8; anything else, f32 or bf16 included, as not int8 under its own name)."""
    from ..runtime import openvino_compiled

    compiled = openvino_compiled(model.clone(), batch=1, precision=None)
    counts: dict[str, dict[str, int]] = {"conv": {"int8": 0}, "gemm": {"int8": 0}}
    for op in compiled.get_runtime_model().get_ordered_ops():
        info = op.get_rt_info()
        kind = {"Convolution": "conv", "FullyConnected": "gemm"}.get(str(info["layerType"].astype(str)))
        if kind is None:
            continue
        precision = str(info["runtimePrecision"].astype(str))
        key = "int8" if precision in ("i8", "u8") else {"f32": "fp32"}.get(precision, precision)
        counts[kind][key] = counts[kind].get(key, 0) + 1
    return counts

"""OpenVINO artifacts: the IR of the fp32 chain (run at fp32 or bf16) and NNCF's int8 flow.

bf16 in OpenVINO is a property of how the CPU plugin runs a model (`INFERENCE_PRECISION_HINT`), not of the
IR's weights; the IR records the hint in its `runtime_options`, which the runner applies
(`runtimes.openvino.hint_for`, the one rule). On a CPU without bf16 support the plugin runs such a model in
fp32: `runtimes.openvino.bf16_supported()` tells, and the proof then says it ran in fp32.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .._optional import require
from ..runtimes import load


def nncf_int8(onnx_model, calib: np.ndarray):
    """NNCF's post-training int8 quantization of the graph (its default preset), on `calib`."""
    import contextlib
    import io
    import logging

    nncf = require("nncf")
    model = load("openvino", onnx_model)
    dataset = nncf.Dataset([calib[i:i + 1] for i in range(len(calib))])
    nncf.set_log_level(logging.ERROR)
    # NNCF draws progress bars on stdout, which `--json -` owns; the command shows its own progress.
    with contextlib.redirect_stdout(io.StringIO()):
        return nncf.quantize(model, dataset, subset_size=len(calib))


def save_ir(model, xml_path: Path) -> None:
    """model.xml + model.bin (weights as they are: no fp16 compression)."""
    ov = require("openvino")
    ov.save_model(model, str(xml_path), compress_to_fp16=False)

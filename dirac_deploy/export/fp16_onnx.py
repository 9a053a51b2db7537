"""fp32 ONNX -> fp16 ONNX for TensorRT 11's strongly typed builds (precision comes from the graph).

Uses onnxconverter-common (the `fp16` extra), keeping fp32 input/output so clients are unchanged.
"""

from __future__ import annotations

import warnings

import onnx

from .._optional import require


def to_fp16(model: onnx.ModelProto) -> onnx.ModelProto:
    """Convert weights and compute to fp16, with Casts at the fp32 input and output."""
    float16 = require("onnxconverter_common.float16")
    with warnings.catch_warnings():
        # It warns once per clamped value; `fp16.scan_fp16` reports those per layer before conversion.
        warnings.simplefilter("ignore", UserWarning)
        return float16.convert_float_to_float16(model, keep_io_types=True)

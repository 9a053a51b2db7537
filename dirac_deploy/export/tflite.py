"""The folded chain as a LiteRT program: `litert_torch.convert` (torch.export -> the LiteRT converter) -> `.tflite`
bytes, proven before anything is written (`export.program.build_program`: every op delegated to XNNPACK, the
written bytes loaded and run by LiteRT's own interpreter against the PyTorch chain).

The record (`artifacts.tflite`) is a metadata entry of the model, `dirac_deploy_metadata`, whose buffer holds
the JSON: the TFLite schema's own place for data a tool adds, which the runtime ignores. It is added with the
schema's object API after conversion (what it records, the delegation, is known only once LiteRT has loaded
the program). LiteRT keeps the NCHW interface with a transpose at each end, which XNNPACK runs too.
"""

from __future__ import annotations

import logging
import os
import warnings

import numpy as np
import torch

from .._optional import require
from ..artifacts.program import METADATA_NAME
from ..errors import ExportError, first_line
from .program import delegated_convs

TFLITE_IDENTIFIER = b"TFL3"


class ZeroPaddedMaxPool(torch.nn.Module):
    """`max_pool2d(x, k, s, padding=p)` of a non-negative `x` as zero padding, then an unpadded pool: exact, since
    PyTorch keeps p <= k/2, so every window holds a real value, and max(real values, 0) = max(real values) when
    they are >= 0. LiteRT's converter writes PyTorch's -inf padding as a PADV2, which its XNNPACK delegate does
    not take (measured: the ImageNet stem's pool split DiracNet-18's program in two); a zero PAD it takes."""

    def __init__(self, pool: torch.nn.MaxPool2d):
        super().__init__()
        self.pool = torch.nn.MaxPool2d(pool.kernel_size, pool.stride, 0, pool.dilation, ceil_mode=pool.ceil_mode)
        p = pool.padding if isinstance(pool.padding, tuple) else (pool.padding, pool.padding)
        self.pad = (p[1], p[1], p[0], p[0])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pool(torch.nn.functional.pad(x, self.pad))


def prepare(module: torch.nn.Module) -> torch.nn.Module:
    """`module` with each padded max pool that follows a ReLU as a `ZeroPaddedMaxPool` (the same function, one
    LiteRT's XNNPACK delegate runs whole); anything but an `nn.Sequential` is returned as it is."""
    if not isinstance(module, torch.nn.Sequential):
        return module
    layers, changed = list(module.children()), False
    for i, m in enumerate(layers):
        if isinstance(m, torch.nn.MaxPool2d) and m.padding not in (0, (0, 0)) and i > 0 \
                and isinstance(layers[i - 1], torch.nn.ReLU):
            layers[i], changed = ZeroPaddedMaxPool(m), True
    return torch.nn.Sequential(*layers).eval() if changed else module


class Program:
    """A converted LiteRT program: its bytes without a record, its delegation, and the convs by precision."""

    def __init__(self, data: bytes, delegated: int, not_delegated: dict[str, int], convs: dict[str, int]):
        self.data, self.delegated, self.not_delegated = data, delegated, not_delegated
        self.runtime_ops = delegated_convs(convs, not_delegated)
        self.layers: list = []

    def with_record(self, record: str) -> bytes:
        return with_metadata(self.data, METADATA_NAME, record.encode())

    def delegation(self) -> dict:
        return {"delegated": self.delegated, "not_delegated": dict(self.not_delegated)}


def with_metadata(data: bytes, name: str, value: bytes) -> bytes:
    """The model with one more metadata entry, `name` -> a new buffer holding `value` (the schema's object API;
    the buffer sits verbatim in the file after its uint32 length).

    Raises:
        ExportError: a model whose weights live outside its flatbuffer (only over 2 GB), which this cannot repack.
    """
    schema = require("ai_edge_litert.schema_py_generated")
    flatbuffers = require("flatbuffers")
    model = schema.ModelT.InitFromPackedBuf(data, 0)
    if any(getattr(b, "offset", 0) > 1 for b in model.buffers or []):
        raise ExportError("the LiteRT model keeps its weights outside the flatbuffer (a model over 2 GB); its record "
                          "cannot be added")
    buffer = schema.BufferT()
    buffer.data = np.frombuffer(value, dtype=np.uint8)
    model.buffers.append(buffer)
    entry = schema.MetadataT()
    entry.name, entry.buffer = name.encode(), len(model.buffers) - 1
    model.metadata = [*(model.metadata or []), entry]
    builder = flatbuffers.Builder(len(data) + len(value) + 1024)
    builder.Finish(model.Pack(builder), file_identifier=TFLITE_IDENTIFIER)
    return bytes(builder.Output())


# PT2E keeps fp32 weights behind quantize/dequantize pairs: LiteRT's converter folds those into per-axis int8
# weights itself and rejects already-folded int8 ones ("stablehlo.uniform_dequantize ... got tensor<...xi8>")
FOLD_QUANTIZE = False


def pt2e_quantizer():
    """litert-torch's PT2E quantizer: static symmetric int8, per-channel weights (`quantize.edge`; `convert` marks
    the conversion static with the same settings)."""
    pt2e = require("litert_torch.quantize.pt2e_quantizer")
    return pt2e.PT2EQuantizer().set_global(pt2e.get_symmetric_quantization_config(is_per_channel=True,
                                                                                   is_dynamic=False))


def convert(module: torch.nn.Module, example: torch.Tensor, *, static_int8: bool = False) -> bytes:
    """`litert_torch.convert` of `module` on `example` to a `.tflite` model's bytes; `static_int8`: `module` is a
    PT2E-converted graph whose quantize/dequantize pairs become int8 ops. litert-torch's progress lines, its
    training-mode notice (a PT2E graph has no eval mode) and the converter's C++ log stay out of the terminal.

    Raises:
        ExportError: torch.export or the conversion fails.
    """
    from ..runtimes.native_log import native_stderr_kept, quiet_imports, with_native_error

    quiet_imports()
    os.environ.setdefault("LITERT_TORCH_SHOW_PROGRESS", "n")
    litert_torch = require("litert_torch")
    quant_config = None
    if static_int8:
        qcfg = require("litert_torch.quantize.quant_config")
        quant_config = qcfg.QuantConfig(pt2e_quantizer=pt2e_quantizer())
    logged: list[str] = []
    previous = logging.root.manager.disable
    try:
        logging.disable(logging.WARNING)
        with warnings.catch_warnings(), native_stderr_kept(logged):
            warnings.simplefilter("ignore")
            edge = litert_torch.convert(module, (example,), quant_config=quant_config)
            return bytes(edge.model_content())
    except Exception as e:  # torch.export and the converter raise many types; all mean "could not convert"
        raise ExportError(with_native_error(f"LiteRT could not convert the chain: {first_line(e)[:300]}",
                                            logged)) from None
    finally:
        logging.disable(previous)


def lower_program(module: torch.nn.Module, input_shape: tuple[int, int, int], batch: int = 1, *,
                  convs: dict[str, int]) -> Program:
    """`module` converted to a LiteRT program for `batch` images, loaded once by LiteRT to count what XNNPACK
    takes (`export.program.lower_program`, which every caller goes through).

    Raises:
        ExportError: LiteRT cannot convert or load it.
    """
    from ..runtimes.litert import delegation, interpreter

    data = convert(module, torch.zeros(batch, *input_shape), static_int8=convs.get("int8", 0) > 0)
    try:
        delegated, rest = delegation(interpreter(data, threads=1))
    except RuntimeError as e:
        raise ExportError(f"LiteRT cannot load the converted program: {first_line(e)[:300]}") from None
    return Program(data, delegated, rest, convs)

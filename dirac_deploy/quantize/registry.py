"""The low-precision artifacts this tool builds: one `{(precision, method, target): Recipe}` table that
`quantize` and `bench --precision` both read, so an artifact is added in one place.

A recipe's `build(fp32, calib, evaluation)` returns the artifact's model, its logits on the evaluation images
(as the target runtime computes them), the per-conv plans (int8 on ONNX Runtime) and notes for the proof.
Builders import their runtimes where they run; this module imports none of them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from . import PRECISIONS  # noqa: F401  (the command line reads it from the import-free package init)


@dataclass
class Built:
    model: Any  # onnx.ModelProto or openvino.Model (imported where used)
    logits: np.ndarray
    plans: list | None = None  # int8.LayerPlan per conv (identity / naive int8)
    int8_types: str | None = None  # "s8s8", "u8s8", "u8s7" or "u8u8" (activations, weights; s7: 7-bit weights)
    notes: list[str] = field(default_factory=list)
    qdq: object = None  # the int8 QDQ ONNX graph (also for an OpenVINO artifact compiled from it)
    reference: object = None  # the fp32 chain in the QDQ graph's units (per-layer comparisons)
    layers: list | None = None  # the per-conv table where the recipe measures it itself (edge programs)


@dataclass(frozen=True)
class Recipe:
    precision: str
    method: str
    target: str
    row: str  # the bench row's name
    build: Callable[[object, np.ndarray, np.ndarray], Built]
    requires: tuple[tuple[str, str], ...] = ()  # (module, what it is) the recipe needs beyond onnxruntime
    default: bool = False  # the default method for (precision, target)
    source: str = "onnx"  # what `build` takes first: the fp32 ONNX graph, or "chain": the PyTorch chain


def _int8(naive: bool, target: str) -> Callable[[object, np.ndarray, np.ndarray], Built]:
    def build(fp32, calib: np.ndarray, evaluation: np.ndarray) -> Built:
        from ..runtimes import load, logits
        from .int8 import FP32, PLAIN, choose_forms, int8_types, quantize_identity, quantize_naive

        notes = []
        if naive:
            # ONNX Runtime's defaults on ONNX Runtime (s8s8); OpenVINO's CPU plugin refused their s8-input stem
            # conv on an AMX Xeon, so the OpenVINO row takes the types this tool picks for it (u8s8).
            types = "s8s8" if target == "onnxruntime" else int8_types(target)
            model = quantize_naive(fp32, calib, None if target == "onnxruntime" else types)
            plans, reference = choose_forms(fp32, keep_stem=False), fp32
            for p in plans:  # the naive form: every conv plain int8
                p.form = PLAIN
        else:
            ident = quantize_identity(fp32, calib, target=target)
            model, plans, types, reference = ident.model, ident.plans, ident.types, ident.reference
            for name, channels in ident.nonpositive.items():
                notes.append(f"{name}: {channels} channel(s) with a non-positive diagonal keep it in the "
                             f"quantized weight (exact, less precise there)")
            kept = [p.name for p in plans if p.form == FP32]
            if kept:
                notes.append(f"kept in fp32: {', '.join(kept)}")
        qdq = model
        if target == "openvino":
            # No precision hint: what is not int8 runs at the plugin's default (bf16 on CPUs with AMX or AVX-512
            # BF16, f32 elsewhere), as the proof measured it and `runtime_ops` counts it. An f32 hint measured
            # 0.66-0.92x as fast on an AMX Xeon (DiracNet-18, batch 1 / 8, a one-off interleaved check).
            model = load("openvino", qdq)
            return Built(model, logits("openvino", model, evaluation, batch=8), plans, types, notes, qdq, reference)
        if target == "tensorrt":
            notes.append("proven with ONNX Runtime simulating the QDQ graph as written (Q/DQ in float, no CPU int8 "
                         "kernels): TensorRT never ran here (build the engine with: dirac-deploy export "
                         "ARTIFACT.onnx --trt MODEL.plan)")
        return Built(model, logits("onnxruntime", model, evaluation, optimized=target != "tensorrt"), plans, types, notes,
                     qdq, reference)
    return build


def _nncf(fp32, calib: np.ndarray, evaluation: np.ndarray) -> Built:
    from ..runtimes import logits
    from .openvino import nncf_int8

    model = nncf_int8(fp32, calib)
    return Built(model, logits("openvino", model, evaluation, batch=8))


def _fp16(fp32, calib: np.ndarray, evaluation: np.ndarray) -> Built:  # noqa: ARG001 (no calibration: a cast)
    from ..export.fp16_onnx import to_fp16
    from ..runtimes import logits

    model = to_fp16(fp32)
    return Built(model, logits("onnxruntime", model, evaluation))


def _openvino_hint(precision: str) -> Callable[[object, np.ndarray, np.ndarray], Built]:
    def build(fp32, calib: np.ndarray, evaluation: np.ndarray) -> Built:  # noqa: ARG001 (a hint, not calibrated)
        from ..runtimes import load, logits
        from ..runtimes.openvino import bf16_supported, hint_for, record_hint

        notes = []
        if precision == "bf16" and not bf16_supported():
            notes.append("this CPU has no bf16 support in OpenVINO (its capabilities list no BF16): the plugin "
                         "runs the model in fp32 here, so this proof is of fp32 arithmetic")
        model = record_hint(load("openvino", fp32), hint_for(precision))
        return Built(model, logits("openvino", model, evaluation, batch=8, precision=precision), notes=notes)
    return build


def _program(engine: str, form: str) -> Callable[[object, np.ndarray, np.ndarray], Built]:
    """An edge runtime's program of the chain (`quantize.edge.program`): fp32, naive int8 or identity int8."""
    def build(chain, calib: np.ndarray, evaluation: np.ndarray) -> Built:
        from ..export.program import BY_ENGINE
        from ..runtimes import logits
        from .edge import program
        from .layer_table import LAYER_TABLE_IMAGES

        prog = program(engine, chain, tuple(evaluation.shape[1:]), calib if form != "fp32" else None, form=form,
                       table_x=evaluation[:LAYER_TABLE_IMAGES] if form != "fp32" else None)
        left = ", ".join(f"{op} x{n}" for op, n in prog.not_delegated.items())
        runtime = BY_ENGINE[engine].runtime
        notes = [f"XNNPACK runs {prog.delegated} ops" + (f"; {runtime}'s own kernels run {left}" if left
                                                          else ", all of them")]
        if form == "identity":
            notes.append("unit-residual form: each identity-carrying conv quantized as its learned part, the "
                         "identity an int8 residual add")
        if form == "projection":
            notes.append("projection form: each identity-carrying conv as conv3x3(R) + conv1x1(diagonal), "
                         "activations equalized per channel (quantize.projection)")
        return Built(prog, logits(engine, prog, evaluation), notes=notes, layers=prog.layers)
    return build


_OPENVINO = (("openvino", "OpenVINO"),)
_EXECUTORCH = (("executorch", "ExecuTorch"),)
_LITERT = (("litert_torch", "litert-torch"), ("ai_edge_litert", "LiteRT"))
# In bench's row order: ONNX Runtime first, then OpenVINO.
RECIPES: dict[tuple[str, str, str], Recipe] = {(r.precision, r.method, r.target): r for r in (
    Recipe("int8", "identity", "onnxruntime", "int8-identity-onnxruntime", _int8(False, "onnxruntime"),
           default=True),
    Recipe("int8", "naive", "onnxruntime", "int8-naive-onnxruntime", _int8(True, "onnxruntime")),
    Recipe("int8", "identity", "tensorrt", "int8-identity-tensorrt", _int8(False, "tensorrt"),
           (("tensorrt", "TensorRT"),), default=True),
    Recipe("fp16", "cast", "onnxruntime", "fp16-onnxruntime", _fp16,
           (("onnxconverter_common.float16", "onnxconverter-common"),), default=True),
    Recipe("fp32", "none", "openvino", "fp32-openvino", _openvino_hint("fp32"), _OPENVINO, default=True),
    Recipe("int8", "identity", "openvino", "int8-identity-openvino", _int8(False, "openvino"), _OPENVINO,
           default=True),
    Recipe("int8", "naive", "openvino", "int8-naive-openvino", _int8(True, "openvino"), _OPENVINO),
    Recipe("int8", "nncf", "openvino", "int8-nncf-openvino", _nncf, (*_OPENVINO, ("nncf", "NNCF"))),
    Recipe("bf16", "hint", "openvino", "bf16-openvino", _openvino_hint("bf16"), _OPENVINO, default=True),
    Recipe("fp32", "none", "executorch", "fp32-executorch", _program("executorch", "fp32"), _EXECUTORCH,
           default=True, source="chain"),
    Recipe("int8", "identity", "executorch", "int8-identity-executorch", _program("executorch", "identity"),
           _EXECUTORCH, default=True, source="chain"),
    Recipe("int8", "projection", "executorch", "int8-projection-executorch", _program("executorch", "projection"),
           _EXECUTORCH, source="chain"),
    Recipe("int8", "naive", "executorch", "int8-naive-executorch", _program("executorch", "naive"), _EXECUTORCH,
           source="chain"),
    Recipe("fp32", "none", "litert", "fp32-litert", _program("litert", "fp32"), _LITERT, default=True,
           source="chain"),
    Recipe("int8", "identity", "litert", "int8-identity-litert", _program("litert", "identity"), _LITERT,
           default=True, source="chain"),
    Recipe("int8", "projection", "litert", "int8-projection-litert", _program("litert", "projection"), _LITERT,
           source="chain"),
    Recipe("int8", "naive", "litert", "int8-naive-litert", _program("litert", "naive"), _LITERT, source="chain"),
)}
DEFAULT_METHOD = {(r.precision, r.target): r.method for r in RECIPES.values() if r.default}
DEFAULT_TARGET = {"int8": "onnxruntime", "fp16": "onnxruntime", "bf16": "openvino", "fp32": "openvino"}


def recipes_for(precisions: tuple[str, ...]) -> list[Recipe]:
    """The recipes of the given precisions, in bench's row order."""
    return [r for r in RECIPES.values() if r.precision in precisions]

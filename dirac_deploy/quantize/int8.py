"""int8 ONNX (QDQ) with ONNX Runtime's static quantizer: the naive baseline and the identity-aware method.

- `naive`: `onnxruntime.quantization.quantize_static` as a user calls it (QDQ, per-channel weights, its
  default int8 types, MinMax calibration): the anchor every comparison names.
- `identity`: the chain in the unit-residual form (`rescale`: per-channel scales carried through ReLU and
  pooling, each identity-carrying conv written as learned conv + its input), then QDQ with only the learned
  part quantized. Per conv a form: `int8-residual` (the identity kept exact), `int8` (convs with no identity,
  the stem among them) or `fp32` (`keep_stem`, or weights too coarse in int8). Then, on the calibration
  images (never the evaluation ones), while the logits stay below a target SQNR, the layer that loses the most
  precision (the largest drop of output SQNR from the layer before) moves to fp32, for at most `max_steps`.

Types (`int8_types`): activations are unsigned (every quantized conv input follows a ReLU or is the image,
which a zero point covers), weights signed where the CPU multiplies u8 x s8 exactly: always in OpenVINO, and
in ONNX Runtime on CPUs with VNNI (vpdpbusd). Without VNNI, ONNX Runtime's u8 x s8 kernels multiply in 16-bit
pairs (vpmaddubsw), which saturates: one DiracNet-like conv measured 21.7 dB there against 38.1 dB unfused, so
there weights are unsigned too (u8u8). OpenVINO runs no conv with u8 weights in int8, and on AVX2 without VNNI
its u8 x s8 convs saturate the same way (the digits model: 10.7 dB in OpenVINO against 22.1 dB simulated), so
for OpenVINO on such CPUs the weights take 7 bits (`u8s7`: quantize_static's `reduce_range`), which no pair
sum can saturate (2 x 255 x 64 < 2^15): measured on an AVX2 EPYC, 7 of 7 convs in int8 at 25.2 dB in
OpenVINO, ONNX Runtime and the simulation alike. Signed activations (ONNX Runtime's default) were measured
2.6x slower than u8s8 for this form on an AMX Xeon, and OpenVINO's CPU plugin refused an s8-input stem conv
there.
"""

from __future__ import annotations

import contextlib
import copy
import io
import logging
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .._optional import require
from ..cpuinfo import cpu_features
from ..runtimes import logits
from ..runtimes.onnxruntime import outputs
from ..spec import INPUT_NAME
from .graph import conv_layers, identity_dominance, weight, weight_sqnr_db, with_outputs
from .rescale import unit_residual

PLAIN, RESIDUAL, FP32 = "int8", "int8-residual", "fp32"


@dataclass
class LayerPlan:
    name: str  # conv node
    output: str
    shape: tuple[int, ...]
    form: str  # int8 | int8-residual | fp32
    weight_sqnr_db: dict[str, float] = field(default_factory=dict)  # by candidate form
    identity_dominance: float = 0.0  # median over output channels


def has_vnni() -> bool:
    return cpu_features().vnni


def int8_types(target: str, vnni: bool | None = None) -> str:
    """Activation and weight types, as "u8s8", "u8s7" (signed weights in 7 bits) or "u8u8" (module docstring)."""
    vnni = has_vnni() if vnni is None else vnni
    if target == "openvino":
        return "u8s8" if vnni else "u8s7"
    if target == "tensorrt":  # TensorRT takes symmetric signed int8 only (zero point 0)
        return "s8s8"
    return "u8s8" if vnni else "u8u8"


def choose_forms(model, carriers: tuple[str, ...] = (), *, keep_stem: bool = True,
                 plain_floor_db: float = 30.0) -> list[LayerPlan]:
    """Per conv of `model` (in the units it will be quantized in): `int8-residual` where it carries the identity
    (`carriers`), else plain int8 when its weights keep >= plain_floor_db SQNR, else fp32; the stem (the conv fed
    the graph input) fp32 when `keep_stem`. Both weight SQNRs are recorded for the layer table."""
    graph_inputs = {i.name for i in model.graph.input}
    stems = {n.name for n in model.graph.node if n.op_type == "Conv" and n.input[0] in graph_inputs}
    plans = []
    for layer in conv_layers(model):
        w = weight(model, layer.weight)
        sq = {PLAIN: weight_sqnr_db(w, "plain")}
        if layer.node in carriers:
            sq[RESIDUAL] = weight_sqnr_db(w, "split")
        if keep_stem and layer.node in stems:
            form = FP32
        elif layer.node in carriers:
            form = RESIDUAL
        else:
            form = PLAIN if sq[PLAIN] >= plain_floor_db else FP32
        dom = float(np.median(identity_dominance(w))) if w.ndim == 4 else 0.0
        plans.append(LayerPlan(layer.node, layer.output, layer.shape, form, sq, dom))
    return plans


class _Reader:
    """ONNX Runtime's CalibrationDataReader over an array, in small batches."""

    def __init__(self, x: np.ndarray, batch: int = 4):
        self._batches = iter([{INPUT_NAME: x[i:i + batch]} for i in range(0, len(x), batch)])

    def get_next(self):
        return next(self._batches, None)


def _quantize_static(model, calib: np.ndarray, **kw):
    q = require("onnxruntime.quantization")
    import onnx

    base = type("Reader", (_Reader, q.CalibrationDataReader), {})
    with tempfile.TemporaryDirectory(prefix="dirac-deploy-q-") as tmp:
        out = Path(tmp) / "q.onnx"
        # quantize_static modifies the ModelProto it is given (it moves initializers to external data): a copy.
        logger = logging.getLogger()
        level = logger.level
        logger.setLevel(logging.ERROR)  # it logs a pre-processing suggestion per call
        try:
            with contextlib.redirect_stdout(io.StringIO()):
                q.quantize_static(copy.deepcopy(model), str(out), base(calib), quant_format=q.QuantFormat.QDQ,
                                  per_channel=True, **kw)
        finally:
            logger.setLevel(level)
        return onnx.load(str(out))


def _qtypes(types: str):
    q = require("onnxruntime.quantization")
    act = q.QuantType.QUInt8 if types[:2] == "u8" else q.QuantType.QInt8
    return act, q.QuantType.QUInt8 if types[2:] == "u8" else q.QuantType.QInt8


def quantize_naive(model, calib: np.ndarray, types: str | None = None):
    """ONNX Runtime's quantize_static with its defaults (per-channel weights, MinMax; int8 types: its default s8s8,
    or `types`)."""
    if types is None:
        return _quantize_static(model, calib)
    act, wt = _qtypes(types)
    return _quantize_static(model, calib, activation_type=act, weight_type=wt)


def _build(model, calib, plans, types, target="onnxruntime"):
    """The QDQ graph. For TensorRT, the placement it fuses for a residual add: Q/DQ on both Add inputs (the
    learned conv's output and the identity branch) and symmetric int8 activations, so that the conv, the add
    and the ReLU become one int8 kernel (TensorRT's "Q/DQ layer placement" guidance for residual blocks)."""
    residual = {p.name for p in plans if p.form == RESIDUAL}
    keep = [p.name for p in plans if p.form == FP32]
    act, wt = _qtypes(types)
    ops, extra = ["Conv", "Gemm"], {}
    if target == "tensorrt":
        ops.append("Add")
        extra = {"extra_options": {"ActivationSymmetric": True, "WeightSymmetric": True}}
    return _quantize_static(unit_residual(model, residual).model, calib, activation_type=act, weight_type=wt,
                            op_types_to_quantize=ops, nodes_to_exclude=keep, reduce_range=types.endswith("s7"),
                            **extra)


def conv_output_sqnr(fp32, quantized, plans: list[LayerPlan], x: np.ndarray) -> list[float | None]:
    """Each planned conv's output SQNR against fp32 on `x`, in plan order (None where the tensor cannot be
    matched): the quantized graph run unfused, every compared output exposed. The one per-layer measure, used
    by the promotion loop and the proof's layer table.

    A quantizer that folds the ReLU into the conv writes the ReLU's output name from the conv node (the clamp
    moves into the Q/DQ pair after it): the tensor compared is whatever the quantized conv node (found by
    name) writes, taken from both graphs, with the ReLU applied where fp32 has one; the residual form's Add
    writes the conv's original output. `fp32` must be in the same units as `quantized` (`Identity.reference`)."""
    from .proof import sqnr_db

    fp32_tensors = {o for n in fp32.graph.node for o in n.output}
    relu_out = {n.output[0] for n in fp32.graph.node if n.op_type == "Relu"}
    by_name = {n.name: n.output[0] for n in quantized.graph.node if n.op_type == "Conv"}
    wanted = {p.name: p.output if p.form == RESIDUAL else by_name.get(p.name) for p in plans}
    tensor: dict[str, str] = {k: v for k, v in wanted.items() if v is not None and v in fp32_tensors}
    names = sorted(set(tensor.values()))
    if not names:
        return [None] * len(plans)
    ref = dict(zip(names, outputs(with_outputs(fp32, names), x, names=names)))
    got = dict(zip(names, outputs(with_outputs(quantized, names), x, optimized=False, names=names)))
    for name in names:  # the removed ReLU: its clamp lives in the Q/DQ pair that follows the conv
        if name in relu_out:
            got[name] = np.maximum(got[name], 0)
    return [sqnr_db(ref[tensor[p.name]], got[tensor[p.name]]) if p.name in tensor else None for p in plans]


@dataclass
class Identity:
    model: object  # the QDQ onnx.ModelProto
    plans: list[LayerPlan]
    types: str
    reference: object  # the fp32 chain rescaled to the quantized graph's units (per-layer comparisons)
    nonpositive: dict[str, int]  # conv -> channels whose diagonal stays in the quantized weight


def logits_on(target: str):
    """How a candidate QDQ graph is judged while layers are promoted: on the runtime the artifact is for.
    OpenVINO runs it (its CPU plugin's int8 kernels differ from ONNX Runtime's: on AVX2 without VNNI, ONNX
    Runtime's u8 x s8 dot products saturate and would push every layer to fp32 for an IR that OpenVINO runs
    accurately); TensorRT is not here, so its graph runs as written (Q/DQ in float: exact int8 arithmetic)."""
    if target == "openvino":
        return lambda model, x: logits("openvino", model, x, batch=8)
    optimized = target != "tensorrt"
    return lambda model, x: logits("onnxruntime", model, x, optimized=optimized)


def quantize_identity(model, calib: np.ndarray, *, target: str = "onnxruntime", types: str | None = None,
                      keep_stem: bool = False, target_db: float = 25.0, max_steps: int = 8) -> Identity:
    """The identity-aware int8 QDQ graph of the fp32 chain `model` (module docstring).

    Raises:
        rescale.RescaleError: the chain holds an op the per-channel scale cannot pass (named).
    """
    from .proof import sqnr_db

    types = types or int8_types(target)
    base = unit_residual(model, set())  # rescaled, nothing rewritten: the reference in the quantized units
    plans = choose_forms(base.model, base.carriers, keep_stem=keep_stem)
    probe = calib[: min(len(calib), 32)]
    ref = logits("onnxruntime", model, probe)
    quantized = _build(model, calib, plans, types, target)
    judge = logits_on(target)
    for _ in range(max_steps):
        if sqnr_db(ref, judge(quantized, probe)) >= target_db:
            break
        layer_db = [np.nan if db is None else db for db in conv_output_sqnr(base.model, quantized, plans, probe)]
        losses = [(prev - cur, i) for i, (prev, cur) in enumerate(zip([np.inf, *layer_db[:-1]], layer_db))
                  if plans[i].form != FP32]
        if not losses:
            break
        _, worst = max(losses, key=lambda t: (t[0] if np.isfinite(t[0]) else -1.0, -t[1]))
        plans[worst].form = FP32
        quantized = _build(model, calib, plans, types, target)
    return Identity(quantized, plans, types, base.model, base.nonpositive)

"""int8 ONNX (QDQ) with ONNX Runtime's static quantizer: the naive baseline and the identity-aware method.

- `naive`: `onnxruntime.quantization.quantize_static` as a user calls it (QDQ, per-channel weights, its
  default int8 types, MinMax calibration): the anchor every comparison names.
- `identity`: per conv, the form its measured weight error calls for (`choose_forms`): plain per-channel int8
  when that keeps the weights above a floor, else the split form of `graph.rewrite_split` (the diagonal exact,
  only the learned part quantized), else the conv stays fp32. Then, on the calibration images (never the
  evaluation ones), while the logits stay below a target SQNR, the layer that loses the most precision (the
  largest drop of output SQNR from the layer before) moves one step up: int8 -> split (same-width convs) ->
  fp32, for at most `max_steps` steps. Types: ONNX Runtime's x86 int8 kernels multiply
  unsigned activations by signed weights in 16-bit pairs (vpmaddubsw) on CPUs without VNNI, which saturates:
  one DiracNet-like conv measured 21.7 dB there against 38.1 dB for the same QDQ graph run unfused. So
  without VNNI both activations and weights are unsigned (u8u8, no such pairing), with VNNI signed (s8s8).
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
from ..spec import INPUT_NAME
from .graph import conv_layers, identity_dominance, ort_outputs, rewrite_split, weight, weight_sqnr_db, with_outputs

PLAIN, SPLIT, FP32 = "int8", "int8-split", "fp32"


@dataclass
class LayerPlan:
    name: str  # conv node
    output: str
    shape: tuple[int, ...]
    form: str  # int8 | int8-split | fp32
    weight_sqnr_db: dict[str, float] = field(default_factory=dict)  # by candidate form
    identity_dominance: float = 0.0  # median over output channels


def has_vnni() -> bool:
    return cpu_features().vnni


def choose_forms(model, *, plain_floor_db: float = 40.0, split_floor_db: float = 30.0) -> list[LayerPlan]:
    """Per conv: plain int8 if its weights keep >= plain_floor_db SQNR, else the split form if that keeps
    >= split_floor_db (same-width 3x3 convs only), else fp32. The stem and the fc are not split (no identity)."""
    plans = []
    for layer in conv_layers(model):
        w = weight(model, layer.weight)
        sq = {PLAIN: weight_sqnr_db(w, "plain")}
        if layer.splittable:
            sq[SPLIT] = weight_sqnr_db(w, "split")
        if sq[PLAIN] >= plain_floor_db:
            form = PLAIN
        elif sq.get(SPLIT, -np.inf) >= split_floor_db:
            form = SPLIT
        else:
            form = FP32
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


def quantize_naive(model, calib: np.ndarray):
    """ONNX Runtime's quantize_static with its defaults (per-channel weights, int8 types, MinMax)."""
    return _quantize_static(model, calib)


def _build(model, calib, plans, kind):
    q = require("onnxruntime.quantization")
    split = {p.name for p in plans if p.form == SPLIT}
    keep = [p.name for p in plans if p.form == FP32]
    graph = rewrite_split(model, split) if split else model
    qtype = q.QuantType.QInt8 if kind == "s8s8" else q.QuantType.QUInt8
    return _quantize_static(graph, calib, activation_type=qtype, weight_type=qtype,
                            op_types_to_quantize=["Conv", "Gemm"], nodes_to_exclude=keep)


def conv_output_sqnr(fp32, quantized, plans: list[LayerPlan], x: np.ndarray) -> list[float | None]:
    """Each planned conv's output SQNR against fp32 on `x`, in plan order (None where the tensor cannot be
    matched): the quantized graph run unfused, every compared output exposed. The one per-layer measure, used
    by the promotion loop and the proof's layer table.

    A quantizer that folds the ReLU into the conv writes the ReLU's output name from the conv node (the clamp
    moves into the Q/DQ pair after it): the tensor compared is whatever the quantized conv node (found by
    name) writes, taken from both graphs, with the ReLU applied where fp32 has one; the split form's Add
    writes the conv's original output."""
    from .proof import sqnr_db

    fp32_tensors = {o for n in fp32.graph.node for o in n.output}
    relu_out = {n.output[0] for n in fp32.graph.node if n.op_type == "Relu"}
    by_name = {n.name: n.output[0] for n in quantized.graph.node if n.op_type == "Conv"}
    tensor = {p.name: p.output if p.form == SPLIT else by_name.get(p.name) for p in plans}
    tensor = {k: v for k, v in tensor.items() if v in fp32_tensors}
    names = sorted(set(tensor.values()))
    if not names:
        return [None] * len(plans)
    ref = dict(zip(names, ort_outputs(with_outputs(fp32, names), x, outputs=names)))
    got = dict(zip(names, ort_outputs(with_outputs(quantized, names), x, optimized=False, outputs=names)))
    for name in names:  # the removed ReLU: its clamp lives in the Q/DQ pair that follows the conv
        if name in relu_out:
            got[name] = np.maximum(got[name], 0)
    return [sqnr_db(ref[tensor[p.name]], got[tensor[p.name]]) if p.name in tensor else None for p in plans]


def quantize_identity(model, calib: np.ndarray, plans: list[LayerPlan] | None = None, *, vnni: bool | None = None,
                      target_db: float = 25.0, max_steps: int = 8):
    """The identity-aware int8 graph of `model` (see the module docstring); returns (model, plans, types)."""
    plans = plans if plans is not None else choose_forms(model)
    kind = "s8s8" if (has_vnni() if vnni is None else vnni) else "u8u8"
    from .proof import sqnr_db

    probe = calib[: min(len(calib), 32)]
    (ref,) = ort_outputs(model, probe)
    quantized = _build(model, calib, plans, kind)
    for _ in range(max_steps):
        if sqnr_db(ref, ort_outputs(quantized, probe)[0]) >= target_db:
            break
        layer_db = [np.nan if db is None else db for db in conv_output_sqnr(model, quantized, plans, probe)]
        losses = [(prev - cur, i) for i, (prev, cur) in enumerate(zip([np.inf, *layer_db[:-1]], layer_db))
                  if plans[i].form != FP32]
        if not losses:
            break
        _, worst = max(losses, key=lambda t: (t[0] if np.isfinite(t[0]) else -1.0, -t[1]))
        plan = plans[worst]
        splittable = SPLIT in plan.weight_sqnr_db
        plan.form = SPLIT if plan.form == PLAIN and splittable else FP32
        quantized = _build(model, calib, plans, kind)
    return quantized, plans, kind

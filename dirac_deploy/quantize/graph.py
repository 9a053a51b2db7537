"""ONNX graph helpers and per-layer numbers for low precision (numpy and onnx).

The identity inside a folded DiracNet kernel: for a same-width, stride-1 3x3 conv, the folded weight is
W' = diag(c) delta + R, with c_o = s_o * alpha_o on the diagonal centre tap and R the learned rest
(entries of order s_o * beta_o / sqrt(9 C)). Per-channel int8 sets channel o's scale from max|W'_o| ~ |c_o|,
so R falls below one quantization step as C grows and is erased (`weight_sqnr_db(w, "plain")` against
"split": the diagonal exact, only R quantized). `rescale` writes the chain so that only R is quantized.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import numpy as np

from ..kernels import identity_dominance  # noqa: F401  (re-exported: the per-layer report uses it)


@dataclass
class ConvLayer:
    node: str  # node name
    weight: str  # initializer name
    output: str  # the conv's output tensor (kept by the rewrite: the Add writes it)
    shape: tuple[int, ...]


def conv_layers(model) -> list[ConvLayer]:
    """Every Conv with an initializer weight, in graph order."""
    from onnx import numpy_helper

    inits = {t.name: t for t in model.graph.initializer}
    layers = []
    for n in model.graph.node:
        if n.op_type != "Conv" or n.input[1] not in inits:
            continue
        shape = tuple(numpy_helper.to_array(inits[n.input[1]]).shape)
        layers.append(ConvLayer(n.name, n.input[1], n.output[0], shape))
    return layers


def weight(model, name: str) -> np.ndarray:
    from onnx import numpy_helper

    return numpy_helper.to_array(next(t for t in model.graph.initializer if t.name == name))


def fake_int8(w: np.ndarray) -> np.ndarray:
    """Symmetric per-output-channel int8 (what per-channel QDQ weights store), as floats."""
    scale = np.abs(w).reshape(len(w), -1).max(axis=1).reshape(-1, *([1] * (w.ndim - 1))) / 127.0
    scale = np.where(scale > 0, scale, 1.0)
    return np.clip(np.round(w / scale), -127, 127) * scale


def split_diag(w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(c, R): the diagonal centre taps (of the first min(out, in) channels) and the rest, W = diag(c) delta + R."""
    o, i, kh, kw = w.shape
    idx = np.arange(min(o, i))
    c = w[idx, idx, kh // 2, kw // 2].copy()
    r = w.copy()
    r[idx, idx, kh // 2, kw // 2] = 0
    return c, r


def weight_sqnr_db(w: np.ndarray, form: str) -> float:
    """SQNR of the layer's weights after int8 in `form` ("plain", or "split": diagonal exact, R quantized)."""
    if form == "split":
        _, r = split_diag(w)
        err = r - fake_int8(r)
    else:
        err = w - fake_int8(w)
    noise = float((err.astype(np.float64) ** 2).sum())
    return float("inf") if noise == 0 else 10 * np.log10(float((w.astype(np.float64) ** 2).sum()) / noise)


def with_outputs(model, names: list[str]):
    """A copy that also outputs the named tensors (for per-layer comparisons)."""
    from onnx import TensorProto, helper

    model = copy.deepcopy(model)
    have = {o.name for o in model.graph.output}
    for name in names:
        if name not in have:
            model.graph.output.append(helper.make_tensor_value_info(name, TensorProto.FLOAT, None))
    return model

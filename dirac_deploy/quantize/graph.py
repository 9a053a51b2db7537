"""ONNX graph surgery and per-layer numbers for low precision (numpy and onnx).

The identity inside a folded DiracNet kernel: for a same-width, stride-1 3x3 conv, the folded weight is
W' = diag(c) delta + R, with c_o = s_o * alpha_o on the diagonal centre tap and R the learned rest
(entries of order s_o * beta_o / sqrt(9 C)). Per-channel int8 sets channel o's scale from max|W'_o| ~ |c_o|,
so R falls below one quantization step as C grows and is erased. Since conv(x, diag(c) delta) = c (.) x
exactly (stride 1, 'same' padding), the layer can be rewritten as

    y = conv(x, R) + c (.) x        (Conv on R, a per-channel Mul of the layer input, an Add)

and only R quantized: its scale then follows the learned part, and the identity stays exact. A transition
conv that widens (out > in) carries the identity on its first `in` outputs (`dirac_` semantics): the product
c (.) x is zero-padded to `out` channels before the Add.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import numpy as np

from ..kernels import identity_dominance  # noqa: F401  (re-exported: the per-layer report uses it)
from ..spec import INPUT_NAME

DIAG_SUFFIX = "_dirac_diag"


@dataclass
class ConvLayer:
    node: str  # node name
    weight: str  # initializer name
    output: str  # the conv's output tensor (kept by the rewrite: the Add writes it)
    shape: tuple[int, ...]
    splittable: bool  # stride 1, 3x3 with padding 1, one group, out >= in (the identity on the first in channels)


def _attr(node, name, default=None):
    for a in node.attribute:
        if a.name == name:
            return list(a.ints) if a.ints else (a.i if a.type == a.INT else default)
    return default


def conv_layers(model) -> list[ConvLayer]:
    """Every Conv with an initializer weight, in graph order."""
    from onnx import numpy_helper

    inits = {t.name: t for t in model.graph.initializer}
    layers = []
    for n in model.graph.node:
        if n.op_type != "Conv" or n.input[1] not in inits:
            continue
        shape = tuple(numpy_helper.to_array(inits[n.input[1]]).shape)
        o, i, kh, kw = shape if len(shape) == 4 else (0, 0, 0, 0)
        strides = _attr(n, "strides", [1, 1]) or [1, 1]
        pads = _attr(n, "pads", [0, 0, 0, 0]) or [0, 0, 0, 0]
        group = _attr(n, "group", 1) or 1
        ok = (o >= i and (kh, kw) == (3, 3) and list(strides) == [1, 1] and list(pads) == [1, 1, 1, 1]
              and group == 1 and o > 0)
        layers.append(ConvLayer(n.name, n.input[1], n.output[0], shape, ok))
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


def rewrite_split(model, node_names: set[str]):
    """A copy of `model` with each named conv written as conv(x, R) + c (.) x (see the module docstring)."""
    from onnx import helper, numpy_helper

    model = copy.deepcopy(model)
    inits = {t.name: t for t in model.graph.initializer}
    nodes = []
    for n in model.graph.node:
        if n.op_type != "Conv" or n.name not in node_names:
            nodes.append(n)
            continue
        w = numpy_helper.to_array(inits[n.input[1]])
        c, r = split_diag(w)
        inits[n.input[1]].CopyFrom(numpy_helper.from_array(r.astype(w.dtype), n.input[1]))
        diag = n.input[1] + DIAG_SUFFIX
        model.graph.initializer.append(numpy_helper.from_array(c.reshape(1, -1, 1, 1).astype(w.dtype), diag))
        out = n.output[0]
        n.output[0] = out + "_learned"
        nodes += [n, helper.make_node("Mul", [n.input[0], diag], [out + "_identity"], name=n.name + "_identity")]
        identity = out + "_identity"
        extra = w.shape[0] - w.shape[1]
        if extra > 0:  # widen: zeros for the outputs that carry no identity
            pads = n.input[1] + "_dirac_pads"
            model.graph.initializer.append(numpy_helper.from_array(np.array([0, 0, 0, 0, 0, extra, 0, 0], np.int64), pads))
            nodes.append(helper.make_node("Pad", [identity, pads], [out + "_identity_padded"], name=n.name + "_widen"))
            identity = out + "_identity_padded"
        nodes.append(helper.make_node("Add", [out + "_learned", identity], [out], name=n.name + "_sum"))
    del model.graph.node[:]
    model.graph.node.extend(nodes)
    return model


def with_outputs(model, names: list[str]):
    """A copy that also outputs the named tensors (for per-layer comparisons)."""
    from onnx import TensorProto, helper

    model = copy.deepcopy(model)
    have = {o.name for o in model.graph.output}
    for name in names:
        if name not in have:
            model.graph.output.append(helper.make_tensor_value_info(name, TensorProto.FLOAT, None))
    return model


def ort_outputs(model, x: np.ndarray, optimized: bool = True, outputs: list[str] | None = None,
                batch: int = 16) -> list[np.ndarray]:
    """`outputs` (default: the first graph output, the logits) of `model` in ONNX Runtime over `x`, in batches."""
    from ..runtime import ort_session

    session = ort_session(model, optimized=optimized)
    names = outputs or [session.get_outputs()[0].name]
    chunks = [session.run(names, {INPUT_NAME: x[i:i + batch]}) for i in range(0, len(x), batch)]
    return [np.concatenate([c[j] for c in chunks]) for j in range(len(names))]

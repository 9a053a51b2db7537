"""The unit-residual form of a folded chain: the Dirac identity as a plain `Add` of the layer input.

A folded same-width kernel is W = diag(c) delta + R (`graph` module docstring). Per-channel int8 of W sets
channel o's scale from |c_o| and erases R; the Mul form conv(x, R) + c (.) x keeps R but its per-channel `Mul`
stops every runtime's int8 conv fusion (measured: slower than fp32). The unit-residual form removes the Mul:

ReLU, max-pool and average-pool commute with a positive per-channel scale, so each activation can be carried
as a = e (.) a~ with a scale vector e that no op computes. For a rewritten conv with input scale e:

    W' = W (.) e[in]                        (the input scale absorbed into the input channels)
    d_o = W'[o, o, centre]                  (the output is written in units of d)
    z~ = conv(a~, W'/d - I delta) + a~ + b/d,   z = d (.) z~

exactly, since conv(a~, I delta) = a~ for a stride-1 'same' 3x3 conv. Only the learned part W'/d - I delta is
quantized, on its own scale; the identity is an `Add` of the layer input, the int8 ResNet pattern the runtimes
fuse. The next conv (or the final Gemm) absorbs d in its input channels. A widening conv (out > in) carries the
identity on its first `in` outputs (the input zero-padded before the Add). A channel whose diagonal is not
positive (ReLU does not commute with a negative scale) keeps its diagonal in the quantized weight and is written
in units of the layer's median positive diagonal: still exact, only less precise there. Convs left plain (the
stem, a strided or grouped conv, one the caller names) absorb their input scale and are also rescaled by d
when they could carry the identity, so every activation keeps one consistent range.

Ops that carry the scale: Relu, MaxPool, AveragePool, GlobalAveragePool, ReduceMean over the spatial axes,
Flatten, Reshape (N, C, 1, 1) -> (N, C); Conv and Gemm absorb it. Anything else with a scaled input is
refused with the node's name (`RescaleError`); v1 chains are folded to pure conv-ReLU (NCReLU absorbed) first.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import numpy as np

from ..errors import OptionError

SCALE_CARRYING = {"Relu", "MaxPool", "AveragePool", "GlobalAveragePool", "ReduceMean", "Flatten", "Reshape"}
LEARNED_SUFFIX = "_learned"


class RescaleError(OptionError):
    """The chain holds an op the scale vector cannot pass (the message names the node)."""


@dataclass(frozen=True)
class Rescaled:
    model: object  # onnx.ModelProto
    residual: tuple[str, ...]  # conv nodes written as learned conv + input
    carriers: tuple[str, ...]  # every conv that could carry the identity (same-width or widening 3x3, stride 1,
    # not fed the graph input: a stem's "diagonal" mixes image channels, it holds no identity)
    nonpositive: dict[str, int]  # conv -> channels whose diagonal is not positive (kept in the weight)


def absorb_input_scale(w: np.ndarray, e: np.ndarray | None) -> np.ndarray:
    """W' = W (.) e[in]: a conv [out, in, kh, kw] or Gemm [out, in] weight fed a~ = a / e computes what W
    computed on a. `e` None: the input is not scaled."""
    if e is None:
        return w
    return w * e.reshape(1, -1, *([1] * (w.ndim - 2)))


def output_units(w: np.ndarray) -> tuple[np.ndarray, int]:
    """d: the units an identity-carrying conv writes its output in, and how many diagonal taps are not positive.
    d_o = W[o, o, centre] for o < in where that is positive; the median positive diagonal elsewhere (the
    widened outputs, non-positive diagonals), 1 when no diagonal is positive."""
    o, i, kh, kw = w.shape
    diag = w[np.arange(i), np.arange(i), kh // 2, kw // 2]
    good = diag > 0
    fill = float(np.median(diag[good])) if good.any() else 1.0
    d = np.full(o, fill, dtype=np.float64)
    d[:i] = np.where(good, diag, fill)
    return d, int((~good).sum())


def unit_residual_weight(w: np.ndarray, d: np.ndarray, residual: bool) -> np.ndarray:
    """W'/d - I delta (residual) or W'/d: the kernel of z~ = z / d. With the identity taken out, the `Add` of
    the (zero-padded) input restores it: conv(a~, I delta) = a~."""
    out = w / d.reshape(-1, 1, 1, 1)
    if residual:
        i, (kh, kw) = w.shape[1], w.shape[2:]
        out[np.arange(i), np.arange(i), kh // 2, kw // 2] -= 1.0
    return out


def _ints(node, name, default):
    """An int or ints attribute of `node` (onnx's own decoding), or `default` when absent."""
    from onnx import helper

    return next((helper.get_attribute_value(a) for a in node.attribute if a.name == name), default)


def can_carry_identity(node, shape: tuple[int, ...]) -> bool:
    """Stride 1, 3x3 with padding 1, one group, out >= in: conv(x, I delta) is x on the first `in` outputs."""
    if len(shape) != 4:
        return False
    o, i, kh, kw = shape
    return (o >= i > 0 and (kh, kw) == (3, 3) and _ints(node, "strides", [1, 1]) == [1, 1]
            and _ints(node, "pads", [0, 0, 0, 0]) == [1, 1, 1, 1] and _ints(node, "group", 1) == 1
            and _ints(node, "dilations", [1, 1]) == [1, 1])


def _refuse(node, why: str) -> RescaleError:
    return RescaleError(f"cannot carry the per-channel scale through node {node.name or node.output[0]!r} "
                        f"({node.op_type}): {why}; the identity-aware int8 needs a conv-ReLU chain (a v1 "
                        f"checkpoint: fold it with `ncrelu='absorb'`), or use `method='naive'` or `method='nncf'`")


def _spatial_mean(node, inits: dict) -> bool:
    """Not a ReduceMean, or one over the spatial axes only (axes an attribute before opset 18, an input after)."""
    if node.op_type != "ReduceMean":
        return True
    from onnx import numpy_helper

    axes = _ints(node, "axes", None)
    if axes is None and len(node.input) > 1 and node.input[1] in inits:
        axes = numpy_helper.to_array(inits[node.input[1]]).tolist()
    return axes is not None and sorted(int(a) % 4 for a in axes) == [2, 3]


def _ensure_bias(model, inits: dict, node, channels: int) -> None:
    """A zero bias for a conv that has none (the unit form divides every conv's bias by its d)."""
    if len(node.input) > 2:
        return
    from onnx import numpy_helper

    bias = node.input[1] + "_bias"
    model.graph.initializer.append(numpy_helper.from_array(np.zeros(channels, np.float32), bias))
    inits[bias] = model.graph.initializer[-1]
    node.input.append(bias)


def _residual_nodes(model, node, extra: int) -> list:
    """The conv as learned conv + input: the conv writes `<out>_learned`, and an `Add` of its input (zero-padded
    by `extra` channels for a widening conv) writes `<out>`, so every consumer keeps its tensor name."""
    from onnx import helper, numpy_helper

    out = node.output[0]
    node.output[0] = out + LEARNED_SUFFIX
    nodes, identity = [node], node.input[0]
    if extra:
        pads = node.name + "_widen_pads"
        model.graph.initializer.append(numpy_helper.from_array(np.array([0, 0, 0, 0, 0, extra, 0, 0], np.int64), pads))
        nodes.append(helper.make_node("Pad", [identity, pads], [out + "_identity"], name=node.name + "_widen"))
        identity = out + "_identity"
    nodes.append(helper.make_node("Add", [out + LEARNED_SUFFIX, identity], [out], name=node.name + "_residual"))
    return nodes


def _gemm_absorbing(node, inits: dict, e: np.ndarray | None) -> np.ndarray:
    """The classifier's weight with the scale `e` of its input absorbed along its input features (float64)."""
    from onnx import numpy_helper

    if node.input[1] not in inits:
        raise _refuse(node, "its weight is computed, not stored")
    w = numpy_helper.to_array(inits[node.input[1]]).astype(np.float64)
    if e is None:
        return w
    return absorb_input_scale(w, e) if _ints(node, "transB", 0) else absorb_input_scale(w.T, e).T


def unit_residual(model, residual: set[str] | None = None) -> Rescaled:
    """A copy of the fp32 chain `model` in the unit-residual form (module docstring), same outputs.
    `residual`: the conv nodes to write as learned conv + input (None: every one that can carry the identity);
    the others are rescaled only. Tensor names are kept: a rewritten conv's `Add` writes its output.

    Raises:
        RescaleError: a scaled activation reaches an op that does not commute with a positive per-channel
            scale, or a conv the rewrite cannot express (named).
    """
    from onnx import numpy_helper

    model = copy.deepcopy(model)
    inits = {t.name: t for t in model.graph.initializer}

    def array(name: str) -> np.ndarray:
        return numpy_helper.to_array(inits[name]).astype(np.float64)

    def store(name: str, a: np.ndarray) -> None:
        inits[name].CopyFrom(numpy_helper.from_array(a.astype(np.float32), name))

    graph_inputs = {i.name for i in model.graph.input}
    scale: dict[str, np.ndarray | None] = dict.fromkeys(graph_inputs)
    nodes, rewritten, carriers, nonpositive = [], [], [], {}
    for n in model.graph.node:
        e = scale.get(n.input[0]) if n.input else None
        if n.op_type == "Conv":
            if n.input[1] not in inits or (len(n.input) > 2 and n.input[2] not in inits):
                raise _refuse(n, "its weight or bias is computed, not stored")
            if e is not None and _ints(n, "group", 1) != 1:
                raise _refuse(n, "a grouped conv fed a scaled input")
            w = absorb_input_scale(array(n.input[1]), e)
            if n.input[0] in graph_inputs or not can_carry_identity(n, w.shape):  # the stem holds no identity
                store(n.input[1], w)
                nodes.append(n)
                scale[n.output[0]] = None
                continue
            carriers.append(n.name)
            d, bad = output_units(w)
            if bad:
                nonpositive[n.name] = bad
            as_residual = residual is None or n.name in residual
            store(n.input[1], unit_residual_weight(w, d, as_residual))
            _ensure_bias(model, inits, n, w.shape[0])
            store(n.input[2], array(n.input[2]) / d)
            scale[n.output[0]] = d
            if as_residual:
                rewritten.append(n.name)
                nodes += _residual_nodes(model, n, w.shape[0] - w.shape[1])
            else:
                nodes.append(n)
        elif n.op_type == "Gemm":
            store(n.input[1], _gemm_absorbing(n, inits, e))
            nodes.append(n)
            scale[n.output[0]] = None
        elif e is None:
            nodes.append(n)
            for out in n.output:
                scale[out] = None
        elif n.op_type in SCALE_CARRYING and _spatial_mean(n, inits):
            nodes.append(n)
            scale[n.output[0]] = e
        else:
            raise _refuse(n, "it does not commute with a positive per-channel scale")
    if any(scale.get(o.name) is not None for o in model.graph.output):
        raise RescaleError("a graph output is still scaled: the chain must end in a Conv or Gemm")
    del model.graph.node[:]
    model.graph.node.extend(nodes)
    return Rescaled(model, tuple(rewritten), tuple(carriers), nonpositive)

"""What an ONNX graph contains: op histograms, and the audit that a folded graph holds nothing but the chain."""

from __future__ import annotations

from collections import Counter

import onnx

# Everything a folded DiracNet may contain. BatchNormalization, Mul/Div/Add (the Dirac parameterization),
# ReduceL2 (normalize) and friends mean something was not folded.
ALLOWED_OPS = frozenset({"Conv", "Relu", "MaxPool", "GlobalAveragePool", "ReduceMean", "Flatten", "Reshape", "Gemm"})


# Ops a chain layer may legitimately export to beyond the base set (dynamo exporter + onnxsim).
LAYER_OPS = {"ncrelu": frozenset({"Max", "Min", "Clip", "Concat"}), "leaky_relu": frozenset({"LeakyRelu"})}


def allowed_ops(layer_kinds) -> frozenset[str]:
    """The base set plus what the chain's NCReLU / LeakyReLU layers export to, if it has any."""
    extra = frozenset().union(*(LAYER_OPS.get(k, frozenset()) for k in layer_kinds))
    return ALLOWED_OPS | extra


def op_histogram(model: onnx.ModelProto) -> dict[str, int]:
    """Node counts per op type, most frequent first."""
    return dict(Counter(n.op_type for n in model.graph.node).most_common())


def audit_violations(model: onnx.ModelProto, allowed: frozenset[str] = ALLOWED_OPS) -> list[str]:
    """`op (node name)` for every node whose op is not allowed; empty when the graph passes."""
    return [f"{n.op_type} ({n.name or 'unnamed'})" for n in model.graph.node if n.op_type not in allowed]

"""What an ONNX graph contains: op histograms, and the audit that a folded graph holds nothing but the chain."""

from __future__ import annotations

from collections import Counter

import onnx

# Everything a folded DiracNet may contain. BatchNormalization, Mul/Div/Add (the Dirac parameterization),
# ReduceL2 (normalize) and friends mean something was not folded.
ALLOWED_OPS = frozenset({"Conv", "Relu", "MaxPool", "GlobalAveragePool", "ReduceMean", "Flatten", "Reshape", "Gemm"})


def op_histogram(model: onnx.ModelProto) -> dict[str, int]:
    """Node counts per op type, most frequent first."""
    return dict(Counter(n.op_type for n in model.graph.node).most_common())


def audit_violations(model: onnx.ModelProto, allowed: frozenset[str] = ALLOWED_OPS) -> list[str]:
    """`op (node name)` for every node whose op is not allowed; empty when the graph passes."""
    return [f"{n.op_type} ({n.name or 'unnamed'})" for n in model.graph.node if n.op_type not in allowed]

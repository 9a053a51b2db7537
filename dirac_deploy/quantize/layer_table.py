"""The per-conv table a low-precision proof carries: each conv's output SQNR against fp32, the names the plain
chain gives its convs, and the precision the runtime runs each in."""

from __future__ import annotations

import re

import numpy as np

from .int8 import FP32, conv_output_sqnr
from .proof import LayerError

LAYER_TABLE_IMAGES = 64  # the per-layer SQNR table's images (it holds every conv output at once)


def conv_errors(fp32, quantized, plans, x: np.ndarray) -> list[LayerError]:
    """Each conv output against fp32 on the eval images (`int8.conv_output_sqnr`), with its weight SQNR."""
    output_db = conv_output_sqnr(fp32, quantized, plans, x)
    return [LayerError(p.name, p.form, db, p.weight_sqnr_db.get(p.form if p.form != FP32 else "int8"),
                       p.identity_dominance) for p, db in zip(plans, output_db)]


def label_runtime_precision(layers: list[LayerError], conv_ops: dict[str, int]) -> None:
    """Each layer's `runs_in` from the runtime's own count of conv precisions, where the count decides it: the
    quantized layers run in int8 when as many convs run in int8 (or every conv does), the kept ones in the one other precision the
    runtime uses (bf16 on a CPU with AVX-512 BF16 or AMX, where "fp32" would mislead), else "?"."""
    quantized = [la for la in layers if la.form != FP32]
    kept = [la for la in layers if la.form == FP32]
    int8 = conv_ops.get("int8", 0)
    others = {p: n for p, n in conv_ops.items() if p != "int8" and n}
    for la in quantized:  # (a projection is two convs: then every conv in int8 is what tells)
        la.runs_in = "int8" if int8 == len(quantized) or (int8 and not others) else "?"
    other = next(iter(others)) if len(others) == 1 and sum(others.values()) == len(kept) else None
    for la in kept:
        la.runs_in = other if other is not None else ("?" if kept else None)


def chain_names(layers: list[LayerError], plain) -> dict[str, str]:
    """Name the table's convs as the plain chain does (group1_block0_conv, ...), not as the exporter did, when
    the chain is at hand and its convs correspond one to one (same order). Returns {exporter's name: chain's}."""
    if plain is None:
        return {}
    import torch

    names = [n for n, m in plain.named_children() if isinstance(m, torch.nn.Conv2d)]
    renamed = {}
    if len(names) == len(layers):
        for layer, name in zip(layers, names):
            renamed[layer.name] = name
            layer.name = name
    return renamed


def renamed_note(note: str, renamed: dict[str, str]) -> str:
    """A note with the exporter's node names replaced by the chain's, as the layer table names them (whole
    names only: node_conv2d_1 is not a prefix of node_conv2d_10)."""
    if not renamed:
        return note
    pattern = re.compile(r"(?<![\w/.])(" + "|".join(map(re.escape, sorted(renamed, key=len, reverse=True)))
                         + r")(?![\w/.])")
    return pattern.sub(lambda m: renamed[m.group(1)], note)

"""What an infer call does with a decoded request, independent of transport (HTTP or gRPC):
check the input against the model, run it with metrics, and pick the outputs (logits, and top_k
indices/scores on request)."""

from __future__ import annotations

import time

import numpy as np

from ..spec import INPUT_NAME, OUTPUT_NAME
from .metrics import ServeMetrics
from .model import ServedModel
from .protocol import InferRequest, ProtocolError

TOP_K_OUTPUTS = ("top_k_indices", "top_k_scores")


def validate_input(model: ServedModel, req: InferRequest) -> np.ndarray:
    """The batch to run, or ProtocolError saying what is wrong with the input."""
    if len(req.inputs) != 1 or req.inputs[0].name != INPUT_NAME:
        raise ProtocolError(f"model '{model.name}' takes one input named '{INPUT_NAME}', got "
                            f"{[t.name for t in req.inputs]}")
    t = req.inputs[0]
    if t.datatype != "FP32":
        raise ProtocolError(f"input '{INPUT_NAME}' must be FP32, got {t.datatype}")
    expected = [-1, *model.input_shape]
    if len(t.shape) != 4 or tuple(t.shape[1:]) != model.input_shape or t.shape[0] < 1:
        raise ProtocolError(f"input '{INPUT_NAME}' has shape {list(t.shape)}; model '{model.name}' expects {expected} "
                            f"(rank 4, batch >= 1)")
    return t.data


async def infer_observed(model: ServedModel, x: np.ndarray, metrics: ServeMetrics) -> tuple[np.ndarray, dict]:
    """Logits for `x` from the model's instances, with queue, compute and batch size recorded in `metrics`.

    Also returns the run's timing in perf_counter seconds: "submitted" (now), "start" and "end" of the run on
    the instance thread, and "images" (the batch size it ran in).
    """
    run: dict = {"submitted": time.perf_counter()}
    logits = await model.infer_async(x, run)
    metrics.observe_run(model.name, run["start"] - run["submitted"], run["end"] - run["start"], run["images"])
    return logits, run


def top_k(logits: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices (INT64) and softmax probabilities (FP32) of the k largest logits per row. A NaN logit (a model
    that overflowed) ranks last and gets probability NaN, never a top index by accident."""
    ranked = np.where(np.isnan(logits), -np.inf, logits)
    idx = np.argsort(-ranked, axis=1, kind="stable")[:, :k].astype(np.int64)
    shifted = np.exp(logits - ranked.max(axis=1, keepdims=True))
    probs = shifted / shifted.sum(axis=1, keepdims=True)
    return idx, np.take_along_axis(probs, idx, axis=1).astype(np.float32)


def select_outputs(model: ServedModel, req: InferRequest, logits: np.ndarray) -> list[tuple[str, np.ndarray, bool]]:
    """(name, array, binary?) for each output the request asked for (all available ones by default)."""
    available = {OUTPUT_NAME: logits}
    k = req.parameters.get("top_k")
    if k is not None:
        if not isinstance(k, int) or isinstance(k, bool) or not 1 <= k <= model.num_classes:
            raise ProtocolError(f"parameter top_k must be an integer in 1..{model.num_classes}, got {k!r}")
        available.update(zip(TOP_K_OUTPUTS, top_k(logits, k)))
    if req.outputs is None:
        return [(name, arr, req.binary_output_default) for name, arr in available.items()]
    result = []
    for o in req.outputs:
        if o.name not in available:
            hint = " (top_k outputs need the top_k parameter)" if o.name in TOP_K_OUTPUTS else ""
            raise ProtocolError(f"unknown output '{o.name}' for model '{model.name}'{hint}; available: "
                                f"{', '.join(available)}")
        result.append((o.name, available[o.name], o.binary))
    return result

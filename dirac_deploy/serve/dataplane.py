"""The Open Inference Protocol without a transport: what every front end asks of the served models.

`DataPlane` answers lookup, liveness and readiness, server and model metadata, the model config, and infer
(validate the decoded request against the model -> run it on the model's instances with queue and compute
recorded -> select the outputs asked for: logits, and top_k indices/scores on request). The HTTP infer handler
(`infer_http`), the FastAPI routes (`app`) and the gRPC servicer (`grpc_service`) only decode, call it and
encode; Ray's replicas serve those same front ends over one `DataPlane`. Errors are `ProtocolError`s carrying
the HTTP status, which gRPC maps to its codes. (MLServer's `handlers/dataplane.py` is the same split.)
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from .. import __version__
from ..spec import INPUT_NAME, OUTPUT_NAME
from .limits import ServeLimits
from .metrics import ServeMetrics
from .model import ServedModel, model_config
from .protocol import InferRequest, ProtocolError

EXTENSIONS = ("binary_tensor_data",)


@dataclass
class InferResult:
    """What infer produced: (name, array, binary?) per output asked for, and the run's timing in
    perf_counter seconds ("submitted", "start", "end"; "images": the batch it ran in)."""

    outputs: list[tuple[str, np.ndarray, bool]]
    run: dict


class DataPlane:
    """The served models behind every protocol front end, with the metrics they share."""

    def __init__(self, models: dict[str, ServedModel], metrics: ServeMetrics | None = None,
                 limits: ServeLimits | None = None):
        self.models = models
        self.metrics = metrics if metrics is not None else ServeMetrics()
        self.limits = limits or ServeLimits()

    def model(self, name: str) -> ServedModel:
        """The served model `name`, or ProtocolError 404 naming the ones served."""
        if name not in self.models:
            raise ProtocolError(f"unknown model '{name[:100]}'; served: {', '.join(sorted(self.models))}", status=404)
        return self.models[name]

    def live(self) -> bool:
        return True

    def ready(self) -> bool:
        """Every model is loaded and verified before the server accepts a connection."""
        return True

    def model_ready(self, name: str) -> bool:
        return name in self.models

    def server_metadata(self) -> dict:
        return {"name": "dirac-deploy", "version": __version__, "extensions": list(EXTENSIONS)}

    def model_metadata(self, name: str) -> dict:
        return self.model(name).metadata()

    def model_config(self, name: str):
        """Triton's `ModelConfig` protobuf (`serve.model.model_config`) under this server's body limit."""
        return model_config(self.model(name), self.limits.max_body_bytes)

    async def infer(self, name: str, req: InferRequest) -> InferResult:
        """Validate -> run (queue, compute and batch size recorded in the metrics) -> select outputs.

        Raises:
            ProtocolError: an unknown model (404), or an input or output request the model cannot take (400).
        """
        model = self.model(name)
        x = validate_input(model, req)
        logits, run = await infer_observed(model, x, self.metrics)
        return InferResult(select_outputs(model, req, logits), run)

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

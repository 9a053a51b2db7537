"""The HTTP app: Open Inference Protocol routes over `ServedModel`s. The only module that imports FastAPI.

Inference runs in a worker thread so health checks and metrics answer while a model computes.
"""

from __future__ import annotations

import time

import numpy as np
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest
from starlette.concurrency import run_in_threadpool

from .. import __version__
from ..export.onnx import INPUT_NAME, OUTPUT_NAME
from .model import ServedModel
from .protocol import HEADER_LENGTH, ProtocolError, encode_infer_response, parse_infer_request

TOP_K_OUTPUTS = ("top_k_indices", "top_k_scores")
DEFAULT_MAX_BODY = 64 << 20


def _error(message: str, status: int) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


def _validate_input(model: ServedModel, req) -> np.ndarray:
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


def _top_k(logits: np.ndarray, k) -> tuple[np.ndarray, np.ndarray]:
    """Indices (INT64) and softmax probabilities (FP32) of the k largest logits per row."""
    idx = np.argsort(-logits, axis=1, kind="stable")[:, :k].astype(np.int64)
    shifted = np.exp(logits - logits.max(axis=1, keepdims=True))
    probs = shifted / shifted.sum(axis=1, keepdims=True)
    return idx, np.take_along_axis(probs, idx, axis=1).astype(np.float32)


def _outputs(model: ServedModel, req, logits: np.ndarray) -> list[tuple[str, np.ndarray, bool]]:
    available = {OUTPUT_NAME: logits}
    k = req.parameters.get("top_k")
    if k is not None:
        if not isinstance(k, int) or isinstance(k, bool) or not 1 <= k <= model.num_classes:
            raise ProtocolError(f"parameter top_k must be an integer in 1..{model.num_classes}, got {k!r}")
        available.update(zip(TOP_K_OUTPUTS, _top_k(logits, k)))
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


def create_app(models: dict[str, ServedModel], *, max_body_bytes: int = DEFAULT_MAX_BODY) -> FastAPI:
    """A FastAPI app serving `models` over the Open Inference Protocol (HTTP), with Prometheus metrics."""
    app = FastAPI(title="dirac-deploy", version=__version__, docs_url=None, redoc_url=None)
    registry = CollectorRegistry()
    requests = Counter("dirac_deploy_requests", "Inference requests by model and HTTP status",
                       ["model", "status"], registry=registry)
    latency = Histogram("dirac_deploy_request_duration_seconds", "Inference request latency (server side)",
                        ["model"], registry=registry,
                        buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0))

    def model_or_404(name: str) -> ServedModel:
        if name not in models:
            raise ProtocolError(f"unknown model '{name}'; served: {', '.join(sorted(models))}", status=404)
        return models[name]

    @app.exception_handler(ProtocolError)
    async def protocol_error(request: Request, exc: ProtocolError):
        return _error(str(exc), exc.status)

    @app.get("/v2/health/live")
    async def live():
        return Response(status_code=200)

    @app.get("/v2/health/ready")
    async def ready():
        return Response(status_code=200)

    @app.get("/v2")
    async def server_metadata():
        return {"name": "dirac-deploy", "version": __version__, "extensions": ["binary_tensor_data"]}

    @app.get("/v2/models/{name}")
    @app.get("/v2/models/{name}/versions/{version}")
    async def model_metadata(name: str, version: str = "1"):
        return model_or_404(name).metadata()

    @app.get("/v2/models/{name}/ready")
    @app.get("/v2/models/{name}/versions/{version}/ready")
    async def model_ready(name: str, version: str = "1"):
        model_or_404(name)
        return Response(status_code=200)

    @app.post("/v2/models/{name}/infer")
    @app.post("/v2/models/{name}/versions/{version}/infer")
    async def infer(name: str, request: Request, version: str = "1"):
        start = time.perf_counter()
        status = 500
        try:
            model = model_or_404(name)
            declared = request.headers.get("content-length")
            if declared and declared.isdigit() and int(declared) > max_body_bytes:
                raise ProtocolError(f"request body of {declared} bytes exceeds the limit of {max_body_bytes}", 413)
            body = bytearray()
            async for chunk in request.stream():
                body += chunk
                if len(body) > max_body_bytes:
                    raise ProtocolError(f"request body exceeds the limit of {max_body_bytes} bytes", 413)
            req = parse_infer_request(bytes(body), request.headers.get(HEADER_LENGTH))
            x = _validate_input(model, req)
            logits = await run_in_threadpool(model.infer, x)
            payload, headers = encode_infer_response(name, req.id, _outputs(model, req, logits))
            status = 200
            return Response(payload, status_code=200, headers=headers)
        except ProtocolError as e:
            status = e.status
            return _error(str(e), e.status)
        finally:
            requests.labels(name if name in models else "_unknown", str(status)).inc()
            if status == 200:
                latency.labels(name).observe(time.perf_counter() - start)

    @app.get("/metrics")
    async def metrics():
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    return app

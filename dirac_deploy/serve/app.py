"""The HTTP app: Open Inference Protocol routes over `ServedModel`s. The only module that imports FastAPI.

Inference runs in a worker thread so health checks and metrics answer while a model computes. Infer responses
carry a `Server-Timing` header (receive, parse, infer, encode in ms) so clients can see where time went.
"""

from __future__ import annotations

import contextlib
import time

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest
from starlette.concurrency import run_in_threadpool

from .. import __version__
from .model import ServedModel
from .inference import select_outputs, validate_input
from .protocol import HEADER_LENGTH, ProtocolError, encode_infer_response, parse_infer_request

DEFAULT_MAX_BODY = 64 << 20


def _error(message: str, status: int) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


def create_app(models: dict[str, ServedModel], *, max_body_bytes: int = DEFAULT_MAX_BODY,
               grpc_address: str | None = None) -> FastAPI:
    """A FastAPI app serving `models` over the Open Inference Protocol (HTTP), with Prometheus metrics.

    With `grpc_address` ("host:port") the gRPC service runs on the same event loop, started and stopped with
    the app.
    """

    @contextlib.asynccontextmanager
    async def lifespan(app):
        if grpc_address is None:
            yield
            return
        from .grpc_service import start_grpc

        server = await start_grpc(models, grpc_address, lambda m, status: requests.labels(m, status).inc(),
                                  lambda m, seconds: latency.labels(m).observe(seconds))
        try:
            yield
        finally:
            await server.stop(grace=10)

    app = FastAPI(title="dirac-deploy", version=__version__, docs_url=None, redoc_url=None, lifespan=lifespan)
    registry = CollectorRegistry()
    requests = Counter("dirac_deploy_requests", "Inference requests by model and status (HTTP code or grpc_CODE)",
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
            t_body = time.perf_counter()
            req = parse_infer_request(bytes(body), request.headers.get(HEADER_LENGTH))
            x = validate_input(model, req)
            t_parsed = time.perf_counter()
            logits = await run_in_threadpool(model.infer, x)
            t_inferred = time.perf_counter()
            payload, headers = encode_infer_response(name, req.id, select_outputs(model, req, logits))
            # Standard Server-Timing header: where the server spent the request, in ms.
            headers["server-timing"] = ", ".join(
                f"{k};dur={1e3 * v:.3f}" for k, v in (("receive", t_body - start), ("parse", t_parsed - t_body),
                                                       ("infer", t_inferred - t_parsed),
                                                       ("encode", time.perf_counter() - t_inferred)))
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

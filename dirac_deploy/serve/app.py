"""The HTTP app: Open Inference Protocol routes over `ServedModel`s. The only module that imports FastAPI.

Infer calls go to a bare ASGI handler (`infer_http`, the hot path); health, metadata and metrics are FastAPI
routes. Inference runs on each model's instance threads, so health checks and metrics answer while models
compute.
"""

from __future__ import annotations

import contextlib

from fastapi import FastAPI
from fastapi.responses import JSONResponse, Response

from .. import __version__
from .infer_http import InferEndpoint, infer_target
from .metrics import ServeMetrics
from .model import ServedModel
from .protocol import ProtocolError

DEFAULT_MAX_BODY = 64 << 20


def create_app(models: dict[str, ServedModel], *, max_body_bytes: int = DEFAULT_MAX_BODY,
               grpc_address: str | None = None):
    """An ASGI app serving `models` over the Open Inference Protocol (HTTP), with Prometheus metrics.

    With `grpc_address` ("host:port") the gRPC service runs on the same event loop, started and stopped with
    the app.
    """
    metrics = ServeMetrics()

    @contextlib.asynccontextmanager
    async def lifespan(app):
        if grpc_address is None:
            yield
            return
        from .grpc_service import start_grpc

        server = await start_grpc(models, grpc_address, metrics)
        try:
            yield
        finally:
            await server.stop(grace=10)

    api = FastAPI(title="dirac-deploy", version=__version__, docs_url=None, redoc_url=None, lifespan=lifespan)

    def model_or_404(name: str) -> ServedModel:
        if name not in models:
            raise ProtocolError(f"unknown model '{name}'; served: {', '.join(sorted(models))}", status=404)
        return models[name]

    @api.exception_handler(ProtocolError)
    async def protocol_error(request, exc: ProtocolError):
        return JSONResponse({"error": str(exc)}, status_code=exc.status)

    @api.get("/v2/health/live")
    async def live():
        return Response(status_code=200)

    @api.get("/v2/health/ready")
    async def ready():
        return Response(status_code=200)

    @api.get("/v2")
    async def server_metadata():
        return {"name": "dirac-deploy", "version": __version__, "extensions": ["binary_tensor_data"]}

    @api.get("/v2/models/{name}")
    @api.get("/v2/models/{name}/versions/{version}")
    async def model_metadata(name: str, version: str = "1"):
        return model_or_404(name).metadata()

    @api.get("/v2/models/{name}/ready")
    @api.get("/v2/models/{name}/versions/{version}/ready")
    async def model_ready(name: str, version: str = "1"):
        model_or_404(name)
        return Response(status_code=200)

    @api.get("/metrics")
    async def metrics_route():
        return Response(metrics.render(), media_type=metrics.content_type)

    infer = InferEndpoint(models, metrics, max_body_bytes)

    async def app(scope, receive, send):
        name = infer_target(scope) if scope["type"] == "http" else None
        if name is None:
            await api(scope, receive, send)
        else:
            await infer(scope, receive, send, name)

    return app

"""The HTTP app: Open Inference Protocol routes over a `dataplane.DataPlane`. The only module that imports
FastAPI.

Infer calls go to a bare ASGI handler (`infer_http`, the hot path); health, metadata and metrics are FastAPI
routes, each one call to the data plane. Inference runs on each model's instance threads, so health checks and metrics answer while models
compute.
"""

from __future__ import annotations

import contextlib

from fastapi import FastAPI
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException

from .. import __version__
from .dataplane import DataPlane
from .infer_http import InferEndpoint, infer_target
from .limits import ServeLimits
from .metrics import ServeMetrics
from .model import ServedModel
from .protocol import ProtocolError


def create_app(models: dict[str, ServedModel] | DataPlane, *, limits: ServeLimits = ServeLimits(),
               grpc_address: str | None = None, metrics: ServeMetrics | None = None):
    """An ASGI app serving `models` (or a `DataPlane` over them, which brings its own limits and metrics) over
    the Open Inference Protocol (HTTP), with Prometheus metrics, enforcing `limits` (the connection-level ones
    are the HTTP protocol's: `http_protocol`).

    With `grpc_address` ("host:port") the gRPC service runs on the same event loop and the same data plane,
    started and stopped with the app. Every error, on every route, is `{"error": "..."}` with a 4xx/5xx status.
    `metrics` lets a caller that serves gRPC itself (Ray Serve's proxy) count both protocols in /metrics.
    """
    plane = models if isinstance(models, DataPlane) else DataPlane(models, metrics, limits)

    @contextlib.asynccontextmanager
    async def lifespan(app):
        if grpc_address is None:
            yield
            return
        from .grpc_service import start_grpc

        server = await start_grpc(plane, grpc_address)
        try:
            yield
        finally:
            await server.stop(grace=10)

    api = FastAPI(title="dirac-deploy", version=__version__, docs_url=None, redoc_url=None, lifespan=lifespan)
    _error_handlers(api)
    _routes(api, plane)
    infer = InferEndpoint(plane)

    async def app(scope, receive, send):
        name = infer_target(scope) if scope["type"] == "http" else None
        if name is None:
            await api(scope, receive, send)
        else:
            await infer(scope, receive, send, name)

    return app


def _error_handlers(api: FastAPI) -> None:
    """Every error as `{"error": "..."}`: ours, FastAPI's unknown routes and methods, bad path parameters."""

    @api.exception_handler(ProtocolError)
    async def protocol_error(request, exc: ProtocolError):
        return JSONResponse({"error": str(exc)}, status_code=exc.status)

    @api.exception_handler(HTTPException)
    async def http_error(request, exc: HTTPException):  # unknown routes (404), wrong methods (405)
        what = {404: f"no route {request.url.path}; see GET /v2 and /v2/models/NAME",
                405: f"method {request.method} is not allowed on {request.url.path}"}.get(exc.status_code, exc.detail)
        return JSONResponse({"error": what}, status_code=exc.status_code, headers=getattr(exc, "headers", None))

    @api.exception_handler(RequestValidationError)
    async def validation_error(request, exc: RequestValidationError):
        return JSONResponse({"error": f"bad request to {request.url.path}: {exc.errors()[:1]}"}, status_code=400)


def _routes(api: FastAPI, plane: DataPlane) -> None:
    """Health, metadata, config and metrics: each a call to the data plane (infer is `infer_http`'s)."""

    @api.get("/v2/health/live")
    async def live():
        return Response(status_code=200 if plane.live() else 503)

    @api.get("/v2/health/ready")
    async def ready():
        return Response(status_code=200 if plane.ready() else 503)

    @api.get("/v2")
    async def server_metadata():
        return plane.server_metadata()

    @api.get("/v2/models/{name}")
    @api.get("/v2/models/{name}/versions/{version}")
    async def model_metadata(name: str, version: str = "1"):
        return plane.model_metadata(name)

    @api.api_route("/v2/models/{name}/infer", methods=["GET", "PUT", "DELETE", "PATCH"])
    @api.api_route("/v2/models/{name}/versions/{version}/infer", methods=["GET", "PUT", "DELETE", "PATCH"])
    async def infer_wrong_method(name: str, version: str = "1"):
        raise ProtocolError("infer takes POST with a v2 inference request body", status=405)

    @api.get("/v2/models/{name}/config")
    @api.get("/v2/models/{name}/versions/{version}/config")
    async def model_config_route(name: str, version: str = "1"):
        from google.protobuf import json_format

        return json_format.MessageToDict(plane.model_config(name), preserving_proto_field_name=True)

    @api.get("/v2/models/{name}/ready")
    @api.get("/v2/models/{name}/versions/{version}/ready")
    async def model_ready(name: str, version: str = "1"):
        plane.model(name)  # an unknown model is a 404 with the served names
        return Response(status_code=200)

    @api.get("/metrics")
    async def metrics_route():
        return Response(plane.metrics.render(), media_type=plane.metrics.content_type)

"""Start the server: load every model (verifying each), then run uvicorn on the given address.

uvicorn handles SIGTERM gracefully: it stops accepting connections and lets in-flight requests finish. It then
restores the previous SIGTERM handler and re-raises the signal; with Python's default handler the process would
die by signal 15, so a no-op handler is installed first and a SIGTERM-driven shutdown exits 0, which is what
container orchestrators read as a clean stop.
"""

from __future__ import annotations

import signal
from typing import Callable

from .model import ServedModel, load_served_model, parse_model_args


def load_models(model_args: list[str], runtime: str, threads: int | None, options=None,
                on_loaded: Callable[[ServedModel], None] = lambda m: None, instances: int = 1,
                max_batch: int = 1) -> dict[str, ServedModel]:
    models = {}
    for source in parse_model_args(model_args):
        models[source.name] = load_served_model(source, runtime, threads, options, instances, max_batch)
        on_loaded(models[source.name])
    return models


def run_server(models: dict[str, ServedModel], host: str, port: int, *, max_body_bytes: int,
               grpc_port: int | None = None, graceful_timeout: float = 30.0) -> None:
    import uvicorn

    from .app import create_app

    grpc_address = None if grpc_port is None else f"{host}:{grpc_port}"
    app = create_app(models, max_body_bytes=max_body_bytes, grpc_address=grpc_address)
    # http="auto" picks httptools (the serve extra installs it), cheaper per request than h11 (README: Serving).
    # The loop stays asyncio: uvloop is optional and has crashed other servers (../reference serving spike).
    config = uvicorn.Config(app, host=host, port=port, http="auto",
                            log_level="warning", timeout_graceful_shutdown=graceful_timeout, loop="asyncio")
    previous = signal.signal(signal.SIGTERM, lambda signum, frame: None)
    try:
        uvicorn.Server(config).run()
    finally:
        signal.signal(signal.SIGTERM, previous)

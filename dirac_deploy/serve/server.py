"""Start the server: load every model (verifying each, through the loader it is given), then run uvicorn on the
given address.

uvicorn handles SIGTERM gracefully: it stops accepting connections and lets in-flight requests finish, for at
most the drain time. It then restores the previous handler and re-raises the signal; with Python's default
handler the process would die by signal 15, so a no-op handler is installed first and a SIGTERM-driven
shutdown exits 0, which is what container orchestrators read as a clean stop.
"""

from __future__ import annotations

import dataclasses
import signal
import socket
from typing import Callable

from ..errors import DiracDeployError
from .limits import ServeLimits
from .model import ServedModel


def _within_open_files(limits: ServeLimits, listeners: int = 1) -> ServeLimits:
    """Cap the connection limit below the process's open-files limit, so the cap, not the kernel, refuses: each
    of `listeners` (HTTP, and gRPC when on) may hold that many connections."""
    try:
        import resource

        soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    except (ImportError, OSError, ValueError):
        return limits
    if soft == resource.RLIM_INFINITY or soft - 64 >= listeners * limits.max_connections:
        return limits
    return dataclasses.replace(limits, max_connections=max(1, (soft - 64) // listeners))  # sessions, model files


def serve_models(load: Callable[[], dict[str, ServedModel]], *, host: str = "127.0.0.1", port: int = 8000, grpc_port: int | None = None,
                 limits: ServeLimits = ServeLimits(),
                 on_started: Callable[[dict[str, ServedModel], int], None] = lambda _models, _port: None,
                 on_stopped: Callable[[], None] | None = None) -> bool:
    """Check the ports, load every model (`load()`, which verifies each: `serve_files.load_models`), serve until
    SIGTERM / Ctrl-C, drain, return.

    Returns False when a stop signal arrived before serving began (nothing was served), else True. A signal
    while the models load calls `on_stopped` at once, if given (the CLI's ends the process: loading writes
    nothing, so there is nothing to undo); else loading finishes and the function returns False. No exception
    is raised from the signal handler: raised inside a runtime's C++ frames it would abort the process.

    Raises:
        DiracDeployError: a port that cannot be bound, a model that cannot be loaded or verified.
    """
    limits = _within_open_files(limits, 2 if grpc_port is not None else 1)
    check_bindable(host, port, "HTTP")
    if grpc_port is not None:
        if grpc_port == port:
            raise DiracDeployError(f"`grpc_port` {grpc_port} is the HTTP `port` too; give two ports")
        check_bindable(host, grpc_port, "gRPC")

    stopping: list[int] = []

    def stop(signum, _frame):
        stopping.append(signum)
        if on_stopped is not None:
            on_stopped()

    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        models = load()
    except Exception:
        if stopping:  # a library may turn an interrupted call into its own error: the signal still counts
            return False
        raise
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    if stopping:
        return False
    run_server(models, host, port, limits=limits, grpc_port=grpc_port,
               on_started=lambda bound: on_started(models, bound))
    return True


def check_bindable(host: str, port: int, what: str = "HTTP") -> None:
    """Fail before loading anything when `host:port` cannot be bound (in use, or not an address of this host)."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as e:
        raise DiracDeployError(f"cannot serve {what} on {host}:{port}: {e.strerror}; give an address of this host "
                               f"(`host`)") from None
    family, kind, proto, _, address = infos[0]
    with socket.socket(family, kind, proto) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # what uvicorn and gRPC set too
        try:
            sock.bind(address)
        except OSError as e:
            flag = "`grpc_port`" if what == "gRPC" else "`port`"
            raise DiracDeployError(f"cannot serve {what} on {host}:{port}: {e.strerror}; choose another {flag}") from None


def run_server(models: dict[str, ServedModel], host: str, port: int, *, limits: ServeLimits = ServeLimits(),
               grpc_port: int | None = None, on_started: Callable[[int], None] = lambda _port: None) -> None:
    """Serve until SIGTERM or Ctrl-C, then drain in-flight requests for at most `limits.drain_seconds` and
    return (the command exits 0). `on_started(port)` runs once the sockets are bound (the port bound, which
    `port=0` leaves to the system)."""
    import uvicorn

    from .app import create_app
    from .http_protocol import guarded_protocol

    grpc_address = None if grpc_port is None else f"{host}:{grpc_port}"
    app = create_app(models, limits=limits, grpc_address=grpc_address)
    # httptools (the serve extra installs it) through a subclass that adds the connection cap, the header
    # timeout and JSON errors. The loop stays asyncio: uvloop is optional and has crashed other servers.
    config = uvicorn.Config(app, host=host, port=port, http=guarded_protocol(limits), log_level="warning",
                            # both are asyncio timeouts inside uvicorn, where fractions of a second work; its
                            # annotations say int
                            timeout_graceful_shutdown=limits.drain_seconds,  # type: ignore[arg-type]
                            timeout_keep_alive=limits.keep_alive,  # type: ignore[arg-type]
                            loop="asyncio")

    class Server(uvicorn.Server):
        async def startup(self, sockets=None):
            await super().startup(sockets)
            if self.started:
                bound = [s.getsockname()[1] for srv in self.servers for s in (srv.sockets or [])]
                on_started(bound[0] if bound else port)

    # uvicorn handles SIGTERM and SIGINT itself (stop accepting, drain), then restores the previous handlers and
    # re-raises the signal; no-op handlers make that a clean return, so a stop exits 0 instead of dying by the
    # signal (SIGTERM) or printing "Aborted!" (SIGINT).
    previous = {sig: signal.signal(sig, lambda _signum, _frame: None) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        Server(config).run()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)

"""Serving engines: one `{name: ServingEngine}` table that `dirac-deploy serve --engine` reads, so a new way
to host the models is one module (its `run(request, events)`) and one row (docs/layout.md).

An engine's `run` starts serving `request.models`, waits until SIGTERM or Ctrl-C (it owns the signals while it
runs), stops, and returns whether it served (False: stopped while still starting). It tells its caller what
happens through `ServeEvents` (the command line prints; the library only reports). This module imports no
engine: an engine's module is imported when it runs.
"""

from __future__ import annotations

import contextlib
import importlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ContextManager

from ._optional import require
from .errors import OptionError
from .load_options import LoadOptions
from .serve.limits import ServeLimits


@dataclass
class ServeRequest:
    """What to serve and how, whatever the engine: the model arguments (`[NAME=]PATH[@RUNTIME]` or folders),
    where to listen, the runtimes' settings, the request limits (`serve.limits.ServeLimits`), whether each
    model is verified, and the engine's own settings (`engine_options`, e.g. Ray's replicas)."""

    models: list[str]
    host: str = "127.0.0.1"
    port: int = 8000
    grpc_port: int | None = None
    runtime: str | None = None
    threads: int | None = None
    instances: int = 1
    max_batch: int = 1
    limits: ServeLimits = field(default_factory=ServeLimits)
    verify: bool = True
    load_options: LoadOptions = field(default_factory=LoadOptions)
    signature_key: Path | None = None  # every model must carry a valid signature by this public key
    engine_options: dict[str, Any] = field(default_factory=dict)


def _nothing(*_args: Any) -> None:
    return None


@dataclass
class ServeEvents:
    """What an engine reports while it runs, each a callback (default: nothing): a model about to load and
    loaded (the builtin engine), a long step (`status(text)`, a context manager around it), a line worth
    showing, the line saying where it serves, and a stop that came while models were still loading (the
    builtin engine calls it from its signal handler and expects the process to end there)."""

    loading: Callable[[str, Path], None] = _nothing
    loaded: Callable[[Any], None] = _nothing  # a serve.model.ServedModel
    status: Callable[[str], ContextManager[Any]] = lambda _text: contextlib.nullcontext()
    note: Callable[[str], None] = _nothing
    started: Callable[[str], None] = _nothing
    stopped_while_loading: Callable[[], None] = _nothing


@dataclass(frozen=True)
class ServingEngine:
    name: str
    description: str
    module: str  # holds `run(request: ServeRequest, events: ServeEvents) -> bool`
    requires: tuple[str, ...] = ()  # modules it needs beyond the serve extra (checked first, with install hints)


SERVING_ENGINES: dict[str, ServingEngine] = {e.name: e for e in (
    ServingEngine("builtin", "one process: uvicorn (HTTP) and grpcio, instances and dynamic batching",
                  "dirac_deploy.serve_files"),
    ServingEngine("ray", "Ray Serve replicas behind Ray's HTTP and gRPC proxies (the [ray] extra)",
                  "dirac_deploy.serve_ray", ("ray.serve",)),
)}


def register(engine: ServingEngine) -> None:
    """Add (or replace) a serving engine: a new engine's module does this, or a test with a toy engine."""
    SERVING_ENGINES[engine.name] = engine


def serve(engine: str, request: ServeRequest, events: ServeEvents | None = None) -> bool:
    """Serve `request` on `engine` until stopped; True if it served, False if stopped while starting.

    Raises:
        OptionError: an unknown engine, or an option the engine cannot take.
        MissingDependencyError: the engine's extra is not installed.
        DiracDeployError: a model that fails its checks, or an engine that does not start.
    """
    if engine not in SERVING_ENGINES:
        raise OptionError(f"unknown serving engine {engine!r}; choose from {', '.join(SERVING_ENGINES)}")
    e = SERVING_ENGINES[engine]
    for module in ("fastapi", "uvicorn", *e.requires):
        require(module)
    return bool(importlib.import_module(e.module).run(request, events or ServeEvents()))

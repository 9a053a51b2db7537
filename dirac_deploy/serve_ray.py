"""Scale-out on Ray Serve: the same Open Inference Protocol app, one copy per replica, behind Ray's HTTP proxy.

Each replica (`Replica`) loads and verifies the models itself (`serve_files.load_models`: the same checks as
`serve`) and builds the same FastAPI app (`serve.app.create_app`, handed to Ray by the late-bound
`__serve_build_asgi_app__`), so the routes, the binary tensor extension, the error bodies and the limits are
the plain server's. Ray's proxy spreads requests over the replicas and replaces a replica that dies. Locally
`ray.init(num_cpus=N)` starts a one-machine cluster; with `address` the application is deployed to a running
cluster (`ray start --head` on one machine, `ray start --address=HEAD:6379` on the others, or KubeRay).

Connection-level limits (header and body timeouts, connection caps) are Ray's proxies', not ours: Ray runs its
own HTTP and gRPC servers (the gRPC one on every interface). Request-level ones (body sizes, in-flight bytes,
JSON size) hold per replica. Batching inside a replica is ours (`serve.batching`) or Ray's `@serve.batch`
(`RayBatcher`); benchmarks/serve_bench.py --case ray-batch measures both.
Ray is imported here only, where used (`pip install '.[ray]'`). gRPC goes through Ray's gRPC proxy,
which registers the KServe v2 service from tritonclient's generated stubs and routes each RPC to the replica
method of the same name; ModelStreamInfer (bidirectional streaming, Triton's decoupled models) is not
served, as by `serve`.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from ._optional import require
from .errors import DiracDeployError, OptionError, first_line
from .serve.app import create_app
from .serve.batching import run_together
from .serve.dataplane import DataPlane
from .serve.limits import ServeLimits
from .serve.metrics import ServeMetrics
from .serve_files import check_sources, load_models, parse_model_args

APP_NAME = "dirac_deploy"


@dataclass(frozen=True)
class RayOptions:
    replicas: int = 2
    cpus_per_replica: float = 1.0
    threads: int | None = 1  # intra-op threads of each replica's runtime
    max_ongoing_requests: int = 8  # per replica; Ray queues the rest at the proxy
    max_batch: int = 1  # images per batch inside each replica (`serve --max-batch`); 1: no batching
    batching: str = "ours"  # "ours" (serve.batching, no wait) or "ray" (`@serve.batch`, waits `batch_wait_s`)
    batch_wait_s: float = 0.01  # Ray's default; used by batching="ray" only
    min_replicas: int | None = None  # both set: Ray's autoscaling between them instead of a fixed count
    max_replicas: int | None = None
    address: str | None = None  # a running cluster ("auto", "ray://host:10001", ...); None: start one here
    num_cpus: int | None = None  # CPUs of the local cluster (None: Ray's count of this machine's)
    runtime_env: dict = field(default_factory=dict)
    # Ray's own INFO / WARNING lines (token set-up, "Started a local Ray instance", Serve's start and stop) on
    # stderr: off unless asked (`serve -v`); errors always show
    ray_log_level: int = logging.ERROR
    # Shared memory a local cluster maps for its object store. Ray's default (30% of RAM, ~7 GB here) fails to
    # start under an address-space limit; a serving-only cluster passes only requests and logits through it.
    object_store_mb: int | None = 256  # None: Ray's default; ignored when joining a running cluster

    drain_seconds: float = 10.0  # on stop, how long a replica's ongoing requests may take to finish

    def deployment_options(self) -> dict:
        # graceful shutdown: a replica being stopped finishes its ongoing requests first (up to drain_seconds)
        opts: dict = {"ray_actor_options": {"num_cpus": self.cpus_per_replica},
                      "max_ongoing_requests": self.max_ongoing_requests,
                      "graceful_shutdown_wait_loop_s": 0.2,
                      "graceful_shutdown_timeout_s": max(self.drain_seconds, 0.1)}
        if self.min_replicas is not None and self.max_replicas is not None:
            opts["autoscaling_config"] = {"min_replicas": self.min_replicas, "max_replicas": self.max_replicas,
                                          "target_ongoing_requests": max(1, self.max_ongoing_requests // 2)}
        else:
            opts["num_replicas"] = self.replicas
        return opts


class RayBatcher:
    """Ray Serve's `@serve.batch` in place of our DynamicBatcher (`ServedModel.use_batcher`): requests that
    arrive within `wait_s` of the first, up to `max_batch` images (Ray's `batch_size_fn` counts images), run as
    one concatenated batch; at most `pool.size` batches run at once. A request larger than `max_batch` runs on
    its own (Ray would refuse it)."""

    def __init__(self, pool, max_batch: int, wait_s: float):
        serve = require("ray.serve")
        self.pool, self.max_batch = pool, max_batch

        async def run(items: list[tuple[np.ndarray, dict | None]]) -> list[np.ndarray]:
            return await run_together(pool, items)

        self._run = serve.batch(run, max_batch_size=max_batch, batch_wait_timeout_s=wait_s,
                                max_concurrent_batches=pool.size,
                                batch_size_fn=lambda items: sum(len(x) for x, _ in items))

    async def infer(self, x: np.ndarray, timing: dict | None = None) -> np.ndarray:
        if len(x) > self.max_batch:
            return await self.pool.run_async(x, timing)
        return await self._run((x, timing))


class _Aborted(Exception):
    """Raised by `_RayGrpcContext.abort`: the status is already on Ray's context, which the proxy answers with."""


class _RayGrpcContext:
    """What `InferenceService` uses of a grpc.aio context (`abort`), on Ray Serve's `RayServegRPCContext`:
    the code and details are set there and the call ends; Ray's proxy sends them to the client."""

    def __init__(self, ray_context):
        self.ray_context = ray_context

    async def abort(self, code, details: str = ""):
        self.ray_context.set_code(code)
        self.ray_context.set_details(details)
        raise _Aborted(details)


def _rpc(method: str):
    """A replica method Ray's gRPC proxy routes the RPC `method` to (Ray passes `grpc_context` by that name)."""

    async def call(self, request, grpc_context=None):
        return await self._grpc(method, request, grpc_context)
    call.__name__ = call.__qualname__ = method
    return call


class Replica:
    """One Ray Serve replica: loads and verifies the models (`serve_files.load_models`, as `serve` does), serves
    the plain server's HTTP app (`__serve_build_asgi_app__`, Ray's late-bound ingress) and, through Ray's gRPC
    proxy, the KServe v2 `GRPCInferenceService`: each RPC name below is a method Ray's proxy routes to."""

    def __init__(self, model_args: list[str], runtime: str | None, limits: ServeLimits, options: RayOptions,
                 verify: bool):
        from .serve.grpc_service import InferenceService

        _alias_generated_module()

        self.models = load_models(model_args, runtime, options.threads, max_batch=options.max_batch, verify=verify)
        if options.batching == "ray" and options.max_batch > 1:
            for m in self.models.values():
                m.use_batcher(RayBatcher(m.instances, options.max_batch, options.batch_wait_s))
        self.limits = limits
        self.plane = DataPlane(self.models, ServeMetrics(), limits)  # HTTP and gRPC share it, and its metrics
        self.grpc = InferenceService(self.plane)

    def __serve_build_asgi_app__(self):
        return create_app(self.plane)

    async def _grpc(self, method: str, request, grpc_context):
        """`method` of the plain server's gRPC service; an abort raises `_Aborted` with the status set on Ray's
        context, which Ray's proxy then answers with (a status set before an exception is kept)."""
        context = _RayGrpcContext(grpc_context)
        # Ray's proxy takes messages up to 2 GB; the body limit of `serve` holds here, per replica
        size = request.ByteSize()
        if size > self.limits.max_body_bytes:
            import grpc

            await context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED,
                                f"request of {size} bytes is larger than the limit "
                                f"({self.limits.max_body_bytes} bytes, `max_body_mb`)")
        return await getattr(self.grpc, method)(request, context)

    # The KServe v2 RPCs the plain server implements (ModelStreamInfer is not served), each routed by name.
    ServerLive = _rpc("ServerLive")
    ServerReady = _rpc("ServerReady")
    ModelReady = _rpc("ModelReady")
    ServerMetadata = _rpc("ServerMetadata")
    ModelMetadata = _rpc("ModelMetadata")
    ModelConfig = _rpc("ModelConfig")
    ModelInfer = _rpc("ModelInfer")


def _alias_generated_module() -> None:
    """tritonclient's generated messages name their module `grpc_service_pb2` (after the .proto), which cannot
    be imported, and Ray pickles each request from its proxy to a replica: pickle finds a class through its
    module, so that name is made to import the module that defines them (in the proxy and in each replica)."""
    from tritonclient.grpc import service_pb2

    sys.modules.setdefault(service_pb2.ModelInferRequest.__module__, service_pb2)


def add_kserve_servicer_to_server(servicer, server) -> None:
    """The servicer function Ray's gRPC proxy registers (`GRPC_SERVICER`): tritonclient's, after the alias."""
    from tritonclient.grpc import service_pb2_grpc

    _alias_generated_module()
    service_pb2_grpc.add_GRPCInferenceServiceServicer_to_server(servicer, server)


GRPC_SERVICER = f"{__name__}.add_kserve_servicer_to_server"


def ray_application(model_args: list[str], *, runtime: str | None = None, limits: ServeLimits = ServeLimits(),
                    options: RayOptions = RayOptions(), verify: bool = True):
    """The bound Ray Serve application serving `model_args` (as `serve` takes them) on every replica."""
    serve = require("ray.serve")
    ingress = serve.ingress()(Replica)
    return serve.deployment(name="oip", **options.deployment_options())(ingress).bind(
        list(model_args), runtime, limits, options, verify)


def start_ray(model_args: list[str], *, host: str = "127.0.0.1", port: int = 8000, runtime: str | None = None,
              limits: ServeLimits = ServeLimits(), options: RayOptions = RayOptions(), verify: bool = True,
              grpc_port: int | None = None, after_init: Callable[[], None] = lambda: None) -> str:
    """Start (or join) a Ray cluster, deploy the application and wait until every replica is up; returns the
    base URL. With `grpc_port`, Ray's gRPC proxy serves the KServe v2 service there too (on every interface:
Ray binds its gRPC proxy to [::], whatever `host` is).
    Models are checked here first, so a bad path fails before any cluster starts. `after_init` runs
    once the cluster is joined, before anything is deployed: `ray.init` installs its own SIGTERM handler in
    the driver, so a caller that handles signals installs its handlers again there."""
    check_sources(parse_model_args(list(model_args), runtime))
    ray = require("ray")
    serve = require("ray.serve")
    _quiet_ray_loggers(options.ray_log_level)
    # Ray's C++ core installs a failure-signal handler that aborts the process on SIGTERM (exit 134, output
    # lost) while ray.init connects; without it a signal reaches Python, and the caller can stop cleanly
    os.environ.setdefault("RAY_DISABLE_FAILURE_SIGNAL_HANDLER", "1")
    local = options.address is None
    store = options.object_store_mb << 20 if local and options.object_store_mb else None
    try:
        if not ray.is_initialized():
            ray.init(address=options.address, num_cpus=options.num_cpus if local else None,
                     include_dashboard=False, log_to_driver=False, runtime_env=options.runtime_env or None,
                     logging_level=options.ray_log_level, object_store_memory=store)
        after_init()
        grpc = {"grpc_options": {"port": grpc_port, "grpc_servicer_functions": [GRPC_SERVICER]}} if grpc_port else {}
        level = logging.getLevelName(options.ray_log_level)
        serve.start(http_options={"host": host, "port": port}, logging_config={"log_level": level}, **grpc)
        _quiet_ray_loggers(options.ray_log_level)  # Serve configures its driver logger when it starts
        serve.run(ray_application(model_args, runtime=runtime, limits=limits, options=options, verify=verify),
                  name=APP_NAME, route_prefix="/", logging_config={"log_level": level})
    except Exception as e:  # Ray's own types (ActorDiedError, RayServeException, RuntimeError, ...)
        stop_ray()  # no half-started cluster left behind
        if isinstance(e, DiracDeployError):
            raise
        store_hint = (f"; a local cluster maps its object store in shared memory ({options.object_store_mb} MiB, "
                      f"`object_store_mb`): under a memory or address-space limit, lower it") if local else ""
        raise DiracDeployError(f"Ray Serve did not start: {type(e).__name__}: {first_line(e, 200)}"
                               f"{store_hint}") from None
    return f"http://{host}:{port}"


def _is_ray(process, psutil) -> bool:
    """A Ray process (raylet, gcs_server, ray::*, Ray's agents and workers), not another child of this one."""
    try:
        args = " ".join(process.cmdline())
    except psutil.Error:
        return False
    return "ray" in args.split("/")[-1] or "/ray/" in args or args.startswith("ray::") or "raylet" in args


def _quiet_ray_loggers(level: int) -> None:
    """Ray's and Ray Serve's loggers in this process at `level` (their handlers write to stderr directly)."""
    for name in ("ray", "ray.serve"):
        logger = logging.getLogger(name)
        logger.setLevel(level)
        for handler in logger.handlers:
            handler.setLevel(level)


def stop_ray() -> None:
    """Remove the application and, when this process started the cluster, stop it (no Ray process is left).

    Ray's shutdown stops the processes it tracks; its dashboard and runtime-env agents, children of the raylet,
    outlived it when the start was interrupted (they ignore SIGTERM once orphaned), so every process this one
    started is listed first and whatever is still alive after the shutdown is ended (terminate, then kill)."""
    ray = require("ray")
    serve = require("ray.serve")
    psutil = require("psutil")
    ours = [p for p in psutil.Process().children(recursive=True) if _is_ray(p, psutil)]  # if it started them
    if ray.is_initialized():
        with contextlib.suppress(Exception):  # a half-started Serve may have no application or controller
            # the application first, while the proxies still carry the answers back: its replicas drain
            # their ongoing requests (graceful_shutdown_timeout_s) before the proxies go
            serve.delete(APP_NAME, _blocking=True)
        with contextlib.suppress(Exception):
            serve.shutdown()
        ray.shutdown()
    left = [p for p in ours if p.is_running()]
    for p in left:
        with contextlib.suppress(psutil.Error):
            p.terminate()
    _, alive = psutil.wait_procs(left, timeout=5)
    for p in alive:
        with contextlib.suppress(psutil.Error):
            p.kill()
    psutil.wait_procs(alive, timeout=5)


def parse_autoscale(text: str | None) -> tuple[int | None, int | None]:
    """'MIN:MAX' -> (MIN, MAX), 0 <= MIN <= MAX, MAX >= 1; None -> (None, None)."""
    if not text:
        return None, None
    try:
        lo, hi = (int(v) for v in text.split(":"))
    except ValueError:
        lo = hi = -1
    if not 0 <= lo <= hi or hi < 1:
        raise OptionError(f"`autoscale` {text!r}: expected MIN:MAX with 0 <= MIN <= MAX, MAX >= 1")
    return lo, hi


def run(request, events) -> bool:
    """The Ray serving engine (`serving.SERVING_ENGINES["ray"]`): signatures checked (with a key), the cluster
    started or joined, the application deployed; then wait for SIGTERM / Ctrl-C (handled here, also during
    the start, which `ray.init` would otherwise take over), remove the app and the cluster.
    `request.engine_options`: replicas, cpus_per_replica, max_ongoing, autoscale ("MIN:MAX"), address,
    batching, object_store_mb, verbose."""
    import signal
    import threading

    # before Ray is imported: its C++ failure-signal handler would abort the process on SIGTERM (start_ray)
    os.environ.setdefault("RAY_DISABLE_FAILURE_SIGNAL_HANDLER", "1")
    opts = dict(request.engine_options)
    if request.signature_key is not None:  # before any cluster starts; each replica's loads are the driver's files
        from .serve_files import verify_signatures

        for line in verify_signatures(list(request.models), request.runtime, request.signature_key):
            events.note(line)
    lo, hi = parse_autoscale(opts.get("autoscale"))
    options = RayOptions(replicas=opts.get("replicas", 2), cpus_per_replica=opts.get("cpus_per_replica", 1.0),
                         threads=request.threads or 1, max_ongoing_requests=opts.get("max_ongoing", 8),
                         max_batch=request.max_batch, min_replicas=lo, max_replicas=hi,
                         address=opts.get("address"), batching=opts.get("batching", "ours"),
                         object_store_mb=opts.get("object_store_mb", 256) or None,
                         drain_seconds=request.limits.drain_seconds,
                         ray_log_level=logging.INFO if opts.get("verbose") else logging.ERROR)
    stop = threading.Event()

    def handle_signals() -> None:  # again after ray.init, which installs its own SIGTERM handler
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda _s, _f: stop.set())

    handle_signals()
    replicas = f"autoscaling {opts['autoscale']}" if opts.get("autoscale") else str(options.replicas)
    try:
        with events.status(f"starting Ray Serve ({replicas} replica(s); each loads and verifies every model) ..."):
            url = start_ray(list(request.models), host=request.host, port=request.port, runtime=request.runtime,
                            limits=request.limits, options=options, verify=request.verify,
                            grpc_port=request.grpc_port, after_init=handle_signals)
    except (SystemExit, KeyboardInterrupt):  # a signal inside ray.init, whose own handler calls sys.exit
        stop.set()
        url = None
    if stop.is_set():  # stopped while starting: take down what started, exit 0
        stop_ray()
        events.note("stopped before serving (signal while starting)")
        # os._exit skips Ray's C++ teardown at interpreter exit, which crashed (SIGSEGV) after an interrupted
        # ray.init once in a few runs; the cluster is already gone and nothing is left to flush but stdout
        sys.stdout.flush()
        os._exit(0)
    try:
        grpc = (f" and gRPC on port {request.grpc_port} (Ray's gRPC proxy listens on every interface, whatever "
                f"`host` says)" if request.grpc_port else "")
        events.started(f"serving {len(request.models)} model argument(s) on {url}/v2{grpc} through Ray Serve "
                       f"(Ctrl-C or SIGTERM to stop)")
        stop.wait()
    finally:
        stop_ray()
    return True

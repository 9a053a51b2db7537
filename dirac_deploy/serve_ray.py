"""Scale-out on Ray Serve: the same Open Inference Protocol app, one copy per replica, behind Ray's HTTP proxy.

Each replica loads and verifies the models itself (`serve_files.load_models`: the same checks as `serve`) and
builds the same FastAPI app (`serve.app.create_app`), handed to Ray as an app *builder* (`serve.ingress`
accepts one), so the routes, the binary tensor extension, the error bodies and the limits are the plain
server's. Ray's proxy spreads requests over the replicas and replaces a replica that dies. Locally
`ray.init(num_cpus=N)` starts a one-machine cluster; with `address` the application is deployed to a running
cluster (`ray start --head` on one machine, `ray start --address=HEAD:6379` on the others, or KubeRay).

Connection-level limits (header and body timeouts, connection caps) are Ray's proxy's, not ours: Ray runs its
own HTTP server. Request-level ones (body sizes, in-flight bytes, JSON size) hold per replica.
Ray is imported here only, where used (`pip install 'dirac-deploy[ray]'`); gRPC is not served through Ray
(its gRPC proxy takes compiled servicers registered per application; not wired yet).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from ._optional import require
from .serve.app import create_app
from .serve.limits import ServeLimits
from .serve_files import check_sources, load_models, parse_model_args

APP_NAME = "dirac_deploy"


@dataclass(frozen=True)
class RayOptions:
    replicas: int = 2
    cpus_per_replica: float = 1.0
    threads: int | None = 1  # intra-op threads of each replica's runtime
    max_ongoing_requests: int = 8  # per replica; Ray queues the rest at the proxy
    max_batch: int = 1  # our dynamic batching inside each replica (`serve --max-batch`)
    min_replicas: int | None = None  # both set: Ray's autoscaling between them instead of a fixed count
    max_replicas: int | None = None
    address: str | None = None  # a running cluster ("auto", "ray://host:10001", ...); None: start one here
    num_cpus: int | None = None  # CPUs of the local cluster (None: Ray's count of this machine's)
    runtime_env: dict = field(default_factory=dict)

    def deployment_options(self) -> dict:
        opts: dict = {"ray_actor_options": {"num_cpus": self.cpus_per_replica},
                      "max_ongoing_requests": self.max_ongoing_requests}
        if self.min_replicas is not None and self.max_replicas is not None:
            opts["autoscaling_config"] = {"min_replicas": self.min_replicas, "max_replicas": self.max_replicas,
                                          "target_ongoing_requests": max(1, self.max_ongoing_requests // 2)}
        else:
            opts["num_replicas"] = self.replicas
        return opts


def _builder(model_args: list[str], runtime: str | None, threads: int | None, max_batch: int, limits: ServeLimits,
             verify: bool):
    """A function each replica calls to build its app: load and verify the models, then the OIP routes."""

    def build():
        return create_app(load_models(model_args, runtime, threads, max_batch=max_batch, verify=verify),
                          limits=limits)
    return build


def ray_application(model_args: list[str], *, runtime: str | None = None, limits: ServeLimits = ServeLimits(),
                    options: RayOptions = RayOptions(), verify: bool = True):
    """The bound Ray Serve application serving `model_args` (as `serve` takes them) on every replica."""
    serve = require("ray.serve")
    replica = type("DiracDeployReplica", (), {"__doc__": "One replica: the OIP app over its own ServedModels."})
    ingress = serve.ingress(_builder(list(model_args), runtime, options.threads, options.max_batch, limits,
                                     verify))(replica)
    return serve.deployment(name="oip", **options.deployment_options())(ingress).bind()


def start_ray(model_args: list[str], *, host: str = "127.0.0.1", port: int = 8000, runtime: str | None = None,
              limits: ServeLimits = ServeLimits(), options: RayOptions = RayOptions(), verify: bool = True,
              after_init: Callable[[], None] = lambda: None) -> str:
    """Start (or join) a Ray cluster, deploy the application and wait until every replica is up; returns the
    base URL. Models are checked here first, so a bad path fails before any cluster starts. `after_init` runs
    once the cluster is joined, before anything is deployed: `ray.init` installs its own SIGTERM handler in
    the driver, so a caller that handles signals installs its handlers again there."""
    check_sources(parse_model_args(list(model_args), runtime))
    ray = require("ray")
    serve = require("ray.serve")
    if not ray.is_initialized():
        ray.init(address=options.address, num_cpus=options.num_cpus if options.address is None else None,
                 include_dashboard=False, log_to_driver=False, runtime_env=options.runtime_env or None)
    after_init()
    serve.start(http_options={"host": host, "port": port})
    serve.run(ray_application(model_args, runtime=runtime, limits=limits, options=options, verify=verify),
              name=APP_NAME, route_prefix="/")
    return f"http://{host}:{port}"


def stop_ray() -> None:
    """Remove the application and, when this process started the cluster, stop it (no Ray process is left)."""
    ray = require("ray")
    serve = require("ray.serve")
    if ray.is_initialized():
        serve.shutdown()
        ray.shutdown()

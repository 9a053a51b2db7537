"""Prometheus metrics shared by the HTTP and gRPC transports: requests by model and status, server latency."""

from __future__ import annotations

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest

_SECONDS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
UNKNOWN_MODEL = "_unknown"  # label for requests naming a model that is not served (keeps label sets bounded)
# gRPC status codes as the HTTP status the gRPC-HTTP mapping gives them, so one `status` label means one thing.
GRPC_TO_HTTP = {"OK": 200, "INVALID_ARGUMENT": 400, "NOT_FOUND": 404, "RESOURCE_EXHAUSTED": 413, "INTERNAL": 500,
                "UNAVAILABLE": 503, "CANCELLED": 499, "UNIMPLEMENTED": 501}


class ServeMetrics:
    content_type = CONTENT_TYPE_LATEST

    def __init__(self) -> None:
        self.registry = CollectorRegistry()  # per server, so tests and several apps in one process do not collide
        self._requests = Counter("dirac_deploy_requests", "Inference requests by model, protocol (http or grpc) and "
                                 "status (the HTTP status code; gRPC codes mapped to theirs)",
                                 ["model", "protocol", "status"], registry=self.registry)
        self._latency = Histogram("dirac_deploy_request_duration_seconds", "Inference request latency (server side)",
                                  ["model"], registry=self.registry,
                                  buckets=_SECONDS)
        self._queue = Histogram("dirac_deploy_queue_duration_seconds", "From decoded request to the start of its run "
                                "on an instance (thread hop, waiting for an instance or a batch)", ["model"],
                                registry=self.registry, buckets=_SECONDS)
        self._compute = Histogram("dirac_deploy_compute_duration_seconds", "The model run a request was part of",
                                  ["model"], registry=self.registry, buckets=_SECONDS)
        self._batch = Histogram("dirac_deploy_batch_images", "Images in the run each request was part of (more than "
                                "the request's own with dynamic batching)", ["model"], registry=self.registry,
                                buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256))

    def count(self, model: str, protocol: str, status: int) -> None:
        self._requests.labels(model, protocol, str(status)).inc()

    def observe(self, model: str, seconds: float) -> None:
        self._latency.labels(model).observe(seconds)

    def observe_run(self, model: str, queue_seconds: float, compute_seconds: float, images: int) -> None:
        self._queue.labels(model).observe(queue_seconds)
        self._compute.labels(model).observe(compute_seconds)
        self._batch.labels(model).observe(images)

    def render(self) -> bytes:
        return generate_latest(self.registry)

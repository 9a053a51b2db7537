"""Prometheus metrics shared by the HTTP and gRPC transports: requests by model and status, server latency."""

from __future__ import annotations

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest

UNKNOWN_MODEL = "_unknown"  # label for requests naming a model that is not served (keeps label sets bounded)


class ServeMetrics:
    content_type = CONTENT_TYPE_LATEST

    def __init__(self) -> None:
        self.registry = CollectorRegistry()  # per server, so tests and several apps in one process do not collide
        self._requests = Counter("dirac_deploy_requests", "Inference requests by model and status (HTTP code or "
                                 "grpc_CODE)", ["model", "status"], registry=self.registry)
        self._latency = Histogram("dirac_deploy_request_duration_seconds", "Inference request latency (server side)",
                                  ["model"], registry=self.registry,
                                  buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0))

    def count(self, model: str, status: str) -> None:
        self._requests.labels(model, status).inc()

    def observe(self, model: str, seconds: float) -> None:
        self._latency.labels(model).observe(seconds)

    def render(self) -> bytes:
        return generate_latest(self.registry)

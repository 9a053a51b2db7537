"""The limits one server enforces (no dependencies: the CLI builds them before importing the server)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ServeLimits:
    """What one server accepts (the README's serving section lists the defaults).

    Attributes:
        max_body_bytes: request bodies larger than this get 413 (HTTP) or RESOURCE_EXHAUSTED (gRPC).
        max_inflight_bytes: request bodies held in memory at once over all connections; a request that would
            go past it gets 503 (the server's memory bound for requests).
        max_json_bytes: the JSON part of an HTTP request (all of it without the binary extension) larger than
            this gets 413: decoded, JSON numbers cost 10-30x their text in memory.
        max_connections: open HTTP connections; one more gets 503 and is closed.
        header_timeout: seconds for a request's headers to arrive (408 after).
        body_timeout: seconds between two chunks of a request body (408 after).
        min_body_rate: bytes per second a request body must average once it has taken `body_timeout` seconds
            (408 below it), so a client trickling a byte now and then cannot hold a connection for ever.
        max_header_bytes: a request's headers, request line included (431 above it).
        keep_alive: seconds an idle keep-alive connection stays open.
        drain_seconds: on SIGTERM, how long in-flight requests may take before they are cancelled.
    """

    max_body_bytes: int = 64 << 20
    max_json_bytes: int = 16 << 20
    max_inflight_bytes: int = 512 << 20
    max_connections: int = 512
    header_timeout: float = 10.0
    body_timeout: float = 10.0
    min_body_rate: float = 1024.0
    max_header_bytes: int = 64 << 10
    keep_alive: float = 5.0
    drain_seconds: float = 10.0

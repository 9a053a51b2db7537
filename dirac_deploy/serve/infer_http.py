"""`POST /v2/models/{name}[/versions/{v}]/infer` as a bare ASGI handler in front of the FastAPI app.

Why not a FastAPI route: the infer call is the only hot path, and a FastAPI route adds request and response
objects, routing and dependency resolution to every call (the README's serving section has the measured
cost). Here the body is read straight from the ASGI channel, decoded by `protocol` into zero-copy numpy views,
run on the model's instance threads, and the response is sent as two ASGI messages. Every other route stays
on FastAPI.

Responses carry a standard `Server-Timing` header in ms: receive (the body), parse, queue (until an instance
thread starts the run: the hop, plus waiting for a free instance or a batch), infer (the run), resume (the hop
back to the event loop), encode.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
import time

from .dataplane import DataPlane
from .metrics import UNKNOWN_MODEL
from .protocol import HEADER_LENGTH, ProtocolError, encode_infer_response, parse_infer_request

_PATH = re.compile(r"^/v2/models/([^/]+)(?:/versions/[^/]+)?/infer$")
_log = logging.getLogger("dirac_deploy.serve")


class ClientGone(Exception):
    """The client closed the connection before its request body arrived."""


def infer_target(scope: dict) -> str | None:
    """The model name if `scope` is an infer call (POST on an infer path), else None."""
    if scope["type"] != "http" or scope["method"] != "POST":
        return None
    m = _PATH.match(scope["path"])
    return m.group(1) if m else None


async def _send(send, status: int, body: bytes, headers: dict[str, str]) -> None:
    raw = [(k.encode("latin-1"), v.encode("latin-1")) for k, v in headers.items()]
    raw.append((b"content-length", str(len(body)).encode()))
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": body})


async def _send_error(send, status: int, message: str) -> None:
    headers = {"content-type": "application/json"}
    if status in (408, 413, 503):  # the body may be unread: the connection cannot carry another request
        headers["connection"] = "close"
    await _send(send, status, json.dumps({"error": message}).encode(), headers)


class InferEndpoint:
    """The HTTP transport of `DataPlane.infer`: the body read under the limits, decoded, answered."""

    def __init__(self, plane: DataPlane):
        self.plane, self.models, self.metrics = plane, plane.models, plane.metrics
        limits = plane.limits
        self.max_body_bytes, self.body_timeout = limits.max_body_bytes, limits.body_timeout
        self.max_json_bytes, self.min_body_rate = limits.max_json_bytes, limits.min_body_rate
        # request bodies held in memory at once, over all connections (the server's main memory bound)
        self.max_inflight_bytes, self.inflight_bytes = limits.max_inflight_bytes, 0

    def _hold(self, n: int, held: list[int]) -> None:
        if self.inflight_bytes + n > self.max_inflight_bytes:
            raise ProtocolError(f"the server already holds {self.inflight_bytes:,} bytes of request bodies (limit "
                                f"{self.max_inflight_bytes:,}, `max_inflight_mb`); send the request again shortly",
                                503)
        self.inflight_bytes += n
        held[0] += n

    async def _body(self, receive, declared: str | None, held: list[int]) -> bytes:
        if declared is not None and declared.isdigit() and int(declared) > self.max_body_bytes:
            raise ProtocolError(f"request body of {declared} bytes exceeds the limit of {self.max_body_bytes}", 413)
        chunks, size, started = [], 0, time.monotonic()
        while True:
            try:
                message = await asyncio.wait_for(receive(), self.body_timeout)
            except TimeoutError:
                raise ProtocolError(f"the request body stalled: no data for {self.body_timeout:g} s", 408) from None
            if message["type"] == "http.disconnect":
                raise ClientGone()
            chunk = message.get("body", b"")
            size += len(chunk)
            elapsed = time.monotonic() - started
            if elapsed > self.body_timeout and size < self.min_body_rate * elapsed:
                raise ProtocolError(f"the request body arrives at {size / elapsed:.0f} bytes/s, below the "
                                    f"{self.min_body_rate:g} bytes/s a body must average after "
                                    f"{self.body_timeout:g} s", 408)
            if size > self.max_body_bytes:
                raise ProtocolError(f"request body exceeds the limit of {self.max_body_bytes} bytes", 413)
            self._hold(len(chunk), held)
            chunks.append(chunk)
            if not message.get("more_body", False):
                return chunks[0] if len(chunks) == 1 else b"".join(chunks)

    async def __call__(self, scope, receive, send, name: str) -> None:
        start = time.perf_counter()
        status = 500
        held = [0]  # bytes of this request's body counted in `inflight_bytes`, released when it is answered
        try:
            self.plane.model(name)  # an unknown model is a 404 before its body is read
            headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
            body = await self._body(receive, headers.get("content-length"), held)
            t_body = time.perf_counter()
            req = parse_infer_request(body, headers.get(HEADER_LENGTH), self.max_json_bytes)
            result = await self.plane.infer(name, req)
            run, t_inferred = result.run, time.perf_counter()
            payload, out_headers = encode_infer_response(name, req.id, result.outputs)
            steps = (("receive", t_body - start), ("parse", run["submitted"] - t_body),
                     ("queue", run["start"] - run["submitted"]),  # hop to an instance thread (+ waiting for one)
                     ("infer", run["end"] - run["start"]), ("resume", t_inferred - run["end"]),  # hop back
                     ("encode", time.perf_counter() - t_inferred))
            out_headers["server-timing"] = ", ".join(f"{k};dur={1e3 * v:.3f}" for k, v in steps)
            status = 200
            await _send(send, 200, payload, out_headers)
        except ProtocolError as e:
            status = e.status
            await _send_error(send, e.status, str(e))
        except ClientGone:
            status = 499  # nginx's code for "client closed request": nothing can be sent
        except asyncio.CancelledError:  # shutdown ran out of drain time: this request is dropped
            status = 503
            # answer in JSON like every other error (returning silently makes uvicorn send text/plain 500); the
            # connection may already be gone
            with contextlib.suppress(Exception):
                await _send_error(send, 503, "the server is shutting down; send the request again")
            return
        except Exception as e:  # a bug or a runtime failure: answer, log, keep serving
            _log.exception("infer on model %r failed", name)
            await _send_error(send, 500, f"inference failed: {type(e).__name__}: {e}")
        finally:
            self.inflight_bytes -= held[0]
            self.metrics.count(name if name in self.models else UNKNOWN_MODEL, "http", status)
            if status == 200:
                self.metrics.observe(name, time.perf_counter() - start)

"""uvicorn's httptools protocol with the limits a public endpoint needs, and JSON errors at the HTTP layer.

- A connection cap (`ServeLimits.max_connections`): one over it gets `503 {"error": ...}` and is closed,
  so silent connections cannot use up the process's file descriptors.
- A header timeout: a connection whose request headers have not all arrived within `header_timeout` seconds
  gets `408 {"error": ...}` and is closed (an idle keep-alive connection is closed by uvicorn's keep-alive
  timeout; a slow body is bounded by the infer handler's body timeout).
- A header size cap (`ServeLimits.max_header_bytes`): a request whose headers (request line included) run
  past it gets `431 {"error": ...}` and is closed, so one connection cannot grow the parser's buffers
  without bound inside the header timeout.
- A request uvicorn cannot parse gets `400 {"error": ...}` instead of uvicorn's plain text.
"""

from __future__ import annotations

import json
import logging

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from .limits import ServeLimits

_log = logging.getLogger("dirac_deploy.serve")
_REASONS = {400: b"Bad Request", 408: b"Request Timeout", 431: b"Request Header Fields Too Large",
            503: b"Service Unavailable"}


def _raw_response(status: int, message: str) -> bytes:
    body = json.dumps({"error": message}).encode()
    return (b"HTTP/1.1 %d %s\r\ncontent-type: application/json\r\ncontent-length: %d\r\nconnection: close\r\n\r\n"
            % (status, _REASONS[status], len(body))) + body


# complexity: a class factory counts the branches of the eleven small methods of the class it builds (none
# over 4); one closure over `limits` is what uvicorn's `http=` (a class, not an instance) lets us pass
def guarded_protocol(limits: ServeLimits) -> type:  # noqa: C901
    """An `HttpToolsProtocol` subclass enforcing `limits` (uvicorn.Config(http=...) takes the class)."""

    class GuardedHttpToolsProtocol(HttpToolsProtocol):
        _header_timer = None
        _awaiting_headers = True
        _header_bytes = 0
        _events = 0  # headers or messages completed on this connection

        def data_received(self, data: bytes) -> None:
            events = self._events
            super().data_received(data)
            if self._events != events or not self._awaiting_headers or self.transport.is_closing():
                return  # headers or a message completed in this chunk: its bytes were not all header bytes
            # a chunk that left the headers incomplete: the parser holds it until the blank line
            self._header_bytes += len(data)
            if self._header_bytes > limits.max_header_bytes:
                self._cancel_header_timer()
                self._reply_and_close(431, f"request headers exceed {limits.max_header_bytes} bytes")

        def on_message_complete(self) -> None:
            super().on_message_complete()
            self._awaiting_headers, self._header_bytes = True, 0
            self._events += 1

        def connection_made(self, transport) -> None:
            super().connection_made(transport)
            if len(self.connections) > limits.max_connections:
                _log.warning("connection refused: %d open, limit %d", len(self.connections) - 1,
                             limits.max_connections)
                self._reply_and_close(503, f"too many open connections (limit {limits.max_connections}); retry later")
                return
            self._arm_header_timer()

        def _arm_header_timer(self) -> None:
            self._cancel_header_timer()
            self._header_timer = self.loop.call_later(limits.header_timeout, self._header_timeout)

        def _cancel_header_timer(self) -> None:
            if self._header_timer is not None:
                self._header_timer.cancel()
                self._header_timer = None

        def _header_timeout(self) -> None:
            self._header_timer = None
            if not self.transport.is_closing():
                self._reply_and_close(408, f"request headers did not arrive within {limits.header_timeout:g} s")

        def _reply_and_close(self, status: int, message: str) -> None:
            self.transport.write(_raw_response(status, message))
            self.transport.close()

        def on_message_begin(self) -> None:
            super().on_message_begin()
            if self._header_timer is None:
                self._arm_header_timer()

        def on_headers_complete(self) -> None:
            self._cancel_header_timer()
            self._awaiting_headers, self._header_bytes = False, 0
            self._events += 1
            super().on_headers_complete()

        def connection_lost(self, exc) -> None:
            self._cancel_header_timer()
            super().connection_lost(exc)

        def send_400_response(self, msg: str) -> None:
            self._cancel_header_timer()
            self._reply_and_close(400, f"invalid HTTP request: {msg}")

    return GuardedHttpToolsProtocol

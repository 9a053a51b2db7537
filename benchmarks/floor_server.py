"""A measuring instrument, not a server: the least any Python HTTP server can add on this machine.

    python benchmarks/floor_server.py PORT DELAY_MS

Bare asyncio, no framework, no parsing beyond Content-Length, no inference, no threads: it reads each request,
blocks for DELAY_MS (standing in for a model of that latency, without using the CPU the client needs), and
writes a canned, valid binary infer response (`logits` [1, 1000] FP32). serve_bench.py drives it with the same
tritonclient calls as the real server, so `floor - DELAY_MS` is what client, kernel, loopback and wake-ups
cost by themselves for a request that waits that long.
"""

from __future__ import annotations

import asyncio
import sys
import time

import numpy as np

from dirac_deploy.serve.protocol import encode_infer_response


def canned_response() -> bytes:
    payload, headers = encode_infer_response("floor", None, [("logits", np.zeros((1, 1000), np.float32), True)])
    head = "HTTP/1.1 200 OK\r\n" + "".join(f"{k}: {v}\r\n" for k, v in headers.items())
    return f"{head}content-length: {len(payload)}\r\n\r\n".encode() + payload


async def serve(port: int, delay_s: float) -> None:
    response = canned_response()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = next((int(line.split(b":", 1)[1]) for line in head.split(b"\r\n")
                               if line.lower().startswith(b"content-length:")), 0)
                await reader.readexactly(length)
                if length:  # an infer call; health checks (GET, no body) answer at once
                    time.sleep(delay_s)
                writer.write(response)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", port, limit=1 << 20)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(serve(int(sys.argv[1]), float(sys.argv[2]) / 1e3))

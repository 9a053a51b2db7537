"""Health checks under slow clients: open N connections that send an infer request's headers and then trickle
its body a byte every 2 s, then time sequential /v2/health/ready checks against the same server.

    .venv/bin/dirac-deploy serve demo-out/digits.onnx --engine ray --replicas 1 --port 8000 &
    .venv/bin/python benchmarks/slow_clients.py --port 8000 --clients 300 --checks 40

Loopback only; the slow connections are closed when it ends (after at most --seconds).
"""

from __future__ import annotations

import argparse
import contextlib
import socket
import threading
import time

import httpx


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--clients", type=int, default=300)
    ap.add_argument("--checks", type=int, default=40)
    ap.add_argument("--timeout", type=float, default=10.0, help="seconds a health check may take")
    ap.add_argument("--seconds", type=float, default=600.0, help="the most the slow clients are kept open")
    args = ap.parse_args()
    socks = []
    for _ in range(args.clients):
        s = socket.create_connection(("127.0.0.1", args.port))
        s.sendall(b"POST /v2/models/digits/infer HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                  b"Content-Length: 100000\r\n\r\n{")
        socks.append(s)
    stop = time.monotonic() + args.seconds

    def trickle() -> None:
        while time.monotonic() < stop:
            for s in socks:
                with contextlib.suppress(OSError):  # a connection the server closed: it stays closed
                    s.send(b" ")
            time.sleep(2)

    threading.Thread(target=trickle, daemon=True).start()
    time.sleep(1)
    ok = timed_out = 0
    took = []
    for _ in range(args.checks):
        t0 = time.monotonic()
        try:
            ok += httpx.get(f"http://127.0.0.1:{args.port}/v2/health/ready", timeout=args.timeout).status_code == 200
        except httpx.TransportError:
            timed_out += 1
        took.append(time.monotonic() - t0)
    for s in socks:
        s.close()
    took.sort()
    print(f"{args.clients} slow clients: {ok} of {args.checks} health checks answered 200, {timed_out} failed or "
          f"timed out ({args.timeout:g} s); p50 {took[len(took) // 2]:.3f} s, max {took[-1]:.3f} s")


if __name__ == "__main__":
    main()

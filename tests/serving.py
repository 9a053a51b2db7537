"""Start `dirac-deploy serve` as a real process on 127.0.0.1 for tests; always bounded in time."""

from __future__ import annotations

import contextlib
import signal
import socket
import subprocess
import sys
import time

import httpx


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# Runs the CLI with some top-level modules made unimportable, as if they were not installed.
_BLOCKING_MAIN = """
import sys
blocked = set(sys.argv.pop(1).split(","))
class Blocker:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in blocked:
            raise ModuleNotFoundError(f"No module named {name!r} (blocked by the test)", name=name)
sys.meta_path.insert(0, Blocker())
from dirac_deploy.cli import main
main()
"""


@contextlib.contextmanager
def running_server(*args: str, timeout: float = 120.0, block: tuple[str, ...] = ()):
    """Yield (base_url, process) once /v2/health/ready answers; SIGTERM and reap it afterwards. `block`: top-level
    modules the server process cannot import (e.g. torch, to prove the .onnx serving path needs none)."""
    port = free_port()
    threads = [] if "--threads" in args else ["--threads", "1"]  # tests default to one intra-op thread
    entry = ["-c", _BLOCKING_MAIN, ",".join(block)] if block else ["-m", "dirac_deploy.cli"]
    cmd = [sys.executable, *entry, "serve", *args, "--host", "127.0.0.1", "--port", str(port), *threads]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + timeout
    try:
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"server exited with {proc.returncode}: {proc.stderr.read()}")
            try:
                if httpx.get(f"{url}/v2/health/ready", timeout=1.0).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise TimeoutError(f"server not ready after {timeout}s")
            time.sleep(0.2)
        yield url, proc
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()

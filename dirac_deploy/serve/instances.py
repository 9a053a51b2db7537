"""Model instances: N independent runners of one model, each used by one request at a time.

This is Triton's `instance_group { count: N }`. On CPU, ONNX Runtime splits every operator of a request over
its intra-op threads; when a client or the HTTP loop takes one of those cores, the whole operator waits for
the preempted thread. Under concurrent load, N instances with cores/N threads each keep every core busy
with whole requests instead (benchmarks/serve_bench.py measures both layouts). One instance with all cores
gives the lowest single-request latency.
"""

from __future__ import annotations

import asyncio
import queue
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Callable

import numpy as np

Runner = Callable[[np.ndarray], np.ndarray]


class InstancePool:
    """Run requests on `runners`, at most one request per runner at a time, off the caller's event loop."""

    def __init__(self, runners: list[Runner], name: str = "model"):
        if not runners:
            raise ValueError("an instance pool needs at least one runner")
        self.size = len(runners)
        self._free: queue.SimpleQueue[Runner] = queue.SimpleQueue()
        for r in runners:
            self._free.put(r)
        # One worker thread per runner: a submitted request always finds a free runner, never queues on one.
        self._executor = ThreadPoolExecutor(self.size, thread_name_prefix=f"infer-{name}")

    def run(self, x: np.ndarray) -> np.ndarray:
        """Run one request on a free runner in the calling thread (blocks while all are busy)."""
        runner = self._free.get()
        try:
            return runner(x)
        finally:
            self._free.put(runner)

    def _run_timed(self, x: np.ndarray) -> tuple[np.ndarray, float, float]:
        start = time.perf_counter()
        return self.run(x), start, time.perf_counter()

    async def run_async(self, x: np.ndarray, timing: dict | None = None) -> np.ndarray:
        """Run one request on the pool's worker threads; the event loop stays free meanwhile.

        With `timing`, sets its "start" and "end" (perf_counter seconds, on the worker thread) around the run,
        so callers can tell the hops between threads from the computation, and "images" (the batch size run).
        """
        y, start, end = await asyncio.get_running_loop().run_in_executor(self._executor, self._run_timed, x)
        if timing is not None:
            timing.update(start=start, end=end, images=len(x))
        return y

    def close(self) -> None:
        self._executor.shutdown(wait=True)

"""Greedy dynamic batching: requests that queue while every instance is busy run together as one batch.

Like Triton's `dynamic_batching` with no queue delay: a request that finds a free instance runs at once (it
never waits for others), and when an instance frees up it takes every queued request, up to `max_batch`
images, concatenated along the batch axis. Larger batches use the hardware better, which pays back part of
what request handling costs under load (what it gains is measured by benchmarks/serve_bench.py and reported in
the README). Each caller gets its own rows back, or the batch's exception.
"""

from __future__ import annotations

import asyncio
from collections import deque

import numpy as np

from .instances import InstancePool


async def run_together(pool: InstancePool, requests: list[tuple[np.ndarray, dict | None]]) -> list[np.ndarray]:
    """One run of several requests: their inputs concatenated along the batch axis, run once on `pool`, the
    output split back into each request's rows; each request's timing dict (if any) gets that run's "start",
    "end" and "images". Shared by our batcher and Ray Serve's `@serve.batch` (`serve_ray.RayBatcher`)."""
    xs = [x for x, _ in requests]
    timing: dict = {}
    y = await pool.run_async(xs[0] if len(xs) == 1 else np.concatenate(xs), timing)
    for _, caller_timing in requests:
        if caller_timing is not None:
            caller_timing.update(timing)
    return np.split(y, np.cumsum([len(x) for x in xs[:-1]])) if len(xs) > 1 else [y]


class DynamicBatcher:
    def __init__(self, pool: InstancePool, max_batch: int):
        if max_batch < 1:
            raise ValueError(f"max_batch must be at least 1, got {max_batch}")
        self.pool, self.max_batch = pool, max_batch
        self._queue: deque[tuple[np.ndarray, asyncio.Future, dict | None]] = deque()
        self._idle = pool.size
        self._tasks: set[asyncio.Task] = set()  # strong references: the loop keeps only weak ones

    async def infer(self, x: np.ndarray, timing: dict | None = None) -> np.ndarray:
        """`x`'s rows of the batch it ran in; `timing` gets that batch's "start" and "end" (see InstancePool)."""
        future = asyncio.get_running_loop().create_future()
        self._queue.append((x, future, timing))
        self._dispatch()
        return await future

    def _take(self) -> list[tuple[np.ndarray, asyncio.Future, dict | None]]:
        """Queued requests for one batch: at least one, then more while they fit in max_batch images."""
        taken = [self._queue.popleft()]
        images = len(taken[0][0])
        while self._queue and images + len(self._queue[0][0]) <= self.max_batch:
            taken.append(self._queue.popleft())
            images += len(taken[-1][0])
        return [t for t in taken if not t[1].cancelled()]  # callers that went away need no rows

    def _dispatch(self) -> None:
        while self._idle and self._queue:
            batch = self._take()
            if batch:
                self._idle -= 1
                task = asyncio.get_running_loop().create_task(self._run(batch))
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)

    async def _run(self, batch: list[tuple[np.ndarray, asyncio.Future, dict | None]]) -> None:
        try:
            rows = await run_together(self.pool, [(x, timing) for x, _, timing in batch])
            for (_, future, _), row in zip(batch, rows):
                if not future.done():
                    future.set_result(row)
        except Exception as e:  # every caller in the batch gets the failure
            for _, future, _ in batch:
                if not future.done():
                    future.set_exception(e)
        finally:
            self._idle += 1
            self._dispatch()

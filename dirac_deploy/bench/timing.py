"""Latency measurement: warm-up, device synchronization, percentiles; peak memory while running."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Callable

import numpy as np


@dataclass(frozen=True)
class Latency:
    """Per-call latency in milliseconds over `count` timed calls."""

    p50: float
    p90: float
    p99: float
    mean: float
    stdev: float
    count: int
    p25: float = 0.0
    p75: float = 0.0

    @property
    def spread(self) -> float:
        """(p75 - p25) / p50: robust to the long tail a shared machine gives every latency distribution."""
        return (self.p75 - self.p25) / self.p50 if self.p50 > 0 else 0.0

    def to_dict(self) -> dict:
        return {"p50": self.p50, "p90": self.p90, "p99": self.p99, "mean": self.mean, "stdev": self.stdev,
                "p25": self.p25, "p75": self.p75, "spread": self.spread,
                "cv": self.stdev / self.mean if self.mean > 0 else 0.0}


def summarize(samples_ms: list[float]) -> Latency:
    a = np.asarray(samples_ms, dtype=np.float64)
    p25, p50, p75, p90, p99 = (float(np.percentile(a, q)) for q in (25, 50, 75, 90, 99))
    return Latency(p50, p90, p99, float(a.mean()), float(a.std(ddof=1)) if len(a) > 1 else 0.0, len(a), p25, p75)


def measure(fn: Callable[[], object], *, warmup: int, iters: int, min_iters: int = 5, max_seconds: float = 10.0,
            sync: Callable[[], None] = lambda: None) -> Latency:
    """Time `fn` after `warmup` untimed calls.

    Each timed call is bracketed by `sync` (torch.cuda.synchronize on GPU) so asynchronous work is counted.
    Stops after `iters` calls, or after `max_seconds` once `min_iters` calls were timed, so large batches on a
    slow machine stay bounded.
    """
    for _ in range(warmup):
        fn()
    sync()
    samples = []
    start = time.perf_counter()
    while len(samples) < iters:
        t0 = time.perf_counter()
        fn()
        sync()
        samples.append((time.perf_counter() - t0) * 1e3)
        if len(samples) >= min_iters and time.perf_counter() - start > max_seconds:
            break
    return summarize(samples)


def _rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096


class PeakRSS:
    """Peak resident-set growth (MB) of this process while the block runs, sampled every millisecond.

    Linux only (/proc); elsewhere it reports None.
    """

    def __enter__(self):
        try:
            self.base = _rss_bytes()
        except OSError:
            self.base = None
            return self
        self.peak = self.base
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def _sample(self):
        while not self._stop.wait(0.001):
            self.peak = max(self.peak, _rss_bytes())

    def __exit__(self, *exc):
        if self.base is not None:
            self._stop.set()
            self._thread.join()
            self.peak = max(self.peak, _rss_bytes())

    @property
    def growth_mb(self) -> float | None:
        return None if self.base is None else (self.peak - self.base) / 2**20

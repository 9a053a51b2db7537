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


@dataclass(frozen=True)
class Timed:
    """One variant's timed calls (ms), per interleaved round: the record both bench loops fill from."""

    rounds: tuple[tuple[float, ...], ...]

    @property
    def latency(self) -> Latency:
        return summarize([t for r in self.rounds for t in r])

    @property
    def round_p50_ms(self) -> list[float]:
        return [float(np.median(r)) for r in self.rounds]

    def fields(self, batch: int) -> dict:
        """The record fields of these timings for `batch` images per call."""
        lat = self.latency
        return {"latency_ms": lat.to_dict(), "iters": lat.count, "throughput": batch / (lat.p50 / 1e3),
                "round_p50_ms": self.round_p50_ms}


def ratio_stats(numerator: Timed, denominator: Timed) -> dict:
    """t_numerator / t_denominator per round (round medians), then their median and interquartile range: with
    the slower alternative as numerator, the speed-up of the denominator (above 1: it is faster)."""
    per_round = [a / b for a, b in zip(numerator.round_p50_ms, denominator.round_p50_ms)]
    q1, med, q3 = (float(v) for v in np.percentile(per_round, (25, 50, 75)))
    return {"median": med, "iqr": [q1, q3], "rounds": per_round}


def time_interleaved(calls: dict[str, Callable[[], object]], *, rounds: int, iters: int, max_seconds: float,
                     sync: Callable[[], None] = lambda: None) -> dict[str, Timed]:
    """Time every call in `rounds` interleaved rounds, each running the calls in a rotated order, so that a
    machine's drift hits them alike. Calls per round: what fits `max_seconds / rounds`, judged from one call,
    within `iters / rounds` (at least one). Each timed call is bracketed by `sync` (torch.cuda.synchronize on
    a GPU) so asynchronous work is counted."""
    names = list(calls)
    samples: dict[str, list[tuple[float, ...]]] = {n: [] for n in names}
    per_round = {}
    for n in names:
        t0 = time.perf_counter()
        calls[n]()
        sync()
        one = max(time.perf_counter() - t0, 1e-6)
        per_round[n] = int(max(1, min(max(iters // rounds, 1), max_seconds / rounds / one)))
    for r in range(rounds):
        for n in names[r % len(names):] + names[:r % len(names)]:
            times = []
            for _ in range(per_round[n]):
                t0 = time.perf_counter()
                calls[n]()
                sync()
                times.append((time.perf_counter() - t0) * 1e3)
            samples[n].append(tuple(times))
    return {n: Timed(tuple(samples[n])) for n in names}


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

"""The speed proof a low-precision artifact carries: its latency against the fp32 chain on its own runtime.

An optimization slower than what it replaces is a defect, so before anything is written the artifact and the
fp32 chain are timed on the runtime the artifact targets (ONNX Runtime: the fp32 ONNX; OpenVINO: the fp32
chain compiled at f32), same threads, interleaved rounds (`timing.time_interleaved`), at batch 1 and
the batch asked for, a few seconds in all. `speedup` is the median over rounds of t_fp32 / t_artifact (above
1: faster). The CPU's features go with it: int8 and bf16 speed depend on VNNI / AMX / AVX-512 BF16.

The proof decides on evidence, per batch, from the per-round ratios (`decide`): accepted when their lower
quartile is at or above `--min-speedup`, refused when their upper quartile is below it; in between, more
rounds are timed, up to `MAX_ROUNDS`, and then the answer is "undecided" (the machine is too noisy to say),
which writes nothing either, unless `--min-speedup 0`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Callable

import numpy as np

from ..runtimes import LOWERED_ENGINES
from . import DEFAULT_MIN_SPEEDUP

SPEED_SECONDS = 3.0  # one pass's timing budget (every batch, both calls); an undecided batch takes more passes
ROUNDS = 5  # rounds per pass
MAX_ROUNDS = 20  # the most rounds a batch is timed for before its decision is "undecided"
ACCEPTED, REFUSED, UNDECIDED, NOT_GATED = "accepted", "refused", "undecided", "not gated"
# Names the artifact runs under in the timer's dict, and the fp32 reference.
ARTIFACT, FP32 = "artifact", "fp32"


def decide(ratios: list[float], min_speedup: float) -> str:
    """accepted / refused / undecided from per-round speed-ups (t_fp32 / t_artifact): accepted when the lower
    quartile is at or above `min_speedup`, refused when the upper quartile is below it, else undecided.
    `min_speedup` 0 or less: not gated."""
    if min_speedup <= 0:
        return NOT_GATED
    q1, q3 = (float(v) for v in np.percentile(ratios, (25, 75)))
    if q1 >= min_speedup:
        return ACCEPTED
    return REFUSED if q3 < min_speedup else UNDECIDED


@dataclass
class SpeedRow:
    batch: int
    fp32_ms: float  # median latency per call, over every round
    artifact_ms: float
    speedup: float  # median over rounds of t_fp32 / t_artifact: what decides, with its quartiles
    iqr: list[float] = field(default_factory=list)
    rounds: list[float] = field(default_factory=list)  # the per-round speed-ups
    decision: str = ""

    def describe(self) -> str:
        """The numbers that decided: the median speed-up, its quartiles and how many rounds, then the latencies."""
        spread = f", rounds' IQR {self.iqr[0]:.2f}-{self.iqr[1]:.2f} over {len(self.rounds)}" if self.iqr else ""
        return (f"batch {self.batch}: {self.speedup:.2f}x{spread} ({self.decision or 'not decided'}; p50 "
                f"{self.artifact_ms:.2f} ms vs {self.fp32_ms:.2f} ms fp32)")


@dataclass
class SpeedProof:
    runtime: str
    reference: str  # what the artifact was timed against
    threads: int
    rows: list[SpeedRow]
    cpu: dict  # cpuinfo.CpuFeatures.to_dict()
    min_speedup: float = DEFAULT_MIN_SPEEDUP

    @property
    def slowest(self) -> SpeedRow:
        return min(self.rows, key=lambda r: r.speedup)

    @property
    def decision(self) -> str:
        """refused if any batch is, else undecided if any batch is, else accepted (not gated: --min-speedup 0)."""
        if self.min_speedup <= 0:
            return NOT_GATED
        decisions = [r.decision or decide(r.rounds or [r.speedup], self.min_speedup) for r in self.rows]
        return next((d for d in (REFUSED, UNDECIDED) if d in decisions), ACCEPTED)

    @property
    def ok(self) -> bool:
        return self.decision in (ACCEPTED, NOT_GATED)

    def describe(self) -> str:
        return "; ".join(r.describe() for r in self.rows) + f" on {self.runtime}, {self.threads} threads"

    def to_dict(self) -> dict:
        d = asdict(self)
        d.update(ok=self.ok, decision=self.decision, slowest_speedup=self.slowest.speedup)
        return d


Timer = Callable[[dict[str, Callable[[], object]]], dict]  # calls -> {name: timing.Timed}


def interleaved_timer(seconds: float = SPEED_SECONDS) -> Timer:
    """The default timer: `ROUNDS` interleaved rounds within about `seconds` (one batch, both calls)."""
    from ..timing import time_interleaved

    return lambda calls: time_interleaved(calls, rounds=ROUNDS, iters=1000, max_seconds=seconds)


def _call_makers(art_model, fp32_onnx, target: str, precision: str, threads: int) -> Callable:
    """Both sides loaded once: a function x -> {ARTIFACT: call, FP32: call} for a batch `x` (`runtimes.for_batches`:
    one ONNX Runtime session for every batch; OpenVINO compiled per batch, a static shape runs faster), on
    shared cores: an idle runner's threads must not take the cores from the one timed next."""
    from ..runtimes import for_batches

    artifact = for_batches(target, art_model, precision=precision, threads=threads, shared_cores=True)
    fp32 = for_batches(target, fp32_onnx, precision="fp32", threads=threads, shared_cores=True)
    return lambda x: {ARTIFACT: artifact(len(x)).bind(x), FP32: fp32(len(x)).bind(x)}


def measure_speed(art_model, fp32_onnx, *, target: str, precision: str, input_shape: tuple[int, ...],
                  batches: tuple[int, ...] = (1,), threads: int | None = None,
                  min_speedup: float = DEFAULT_MIN_SPEEDUP, timer: Timer | None = None,
                  make_calls: Callable[[np.ndarray], dict] | None = None) -> SpeedProof:
    """Time `art_model` (ONNX, an openvino.Model or an ExecuTorch program) against the fp32 reference on
    `target` (the fp32 ONNX `fp32_onnx`, or for ExecuTorch the fp32 program).
    `make_calls`: x -> {ARTIFACT: call, FP32: call} in place of loading both on `target` (a caller that
    holds its runners already; the tests)."""
    import os

    from ..cpuinfo import cpu_features
    from ..timing import Timed, ratio_stats

    threads = threads or os.cpu_count() or 1
    batches = tuple(dict.fromkeys(batches))
    timer = timer or interleaved_timer(SPEED_SECONDS / len(batches))
    calls = make_calls or _call_makers(art_model, fp32_onnx, target, precision, threads)
    rows = []
    for batch in batches:
        x = np.random.default_rng(batch).standard_normal((batch, *input_shape)).astype(np.float32)
        batch_calls = calls(x)
        timed = timer(batch_calls)
        while True:
            ratio = ratio_stats(timed[FP32], timed[ARTIFACT])
            decision = decide(ratio["rounds"], min_speedup)
            if decision != UNDECIDED or len(ratio["rounds"]) >= MAX_ROUNDS:
                break
            more = timer(batch_calls)  # the quartiles straddle the bar: more evidence, up to MAX_ROUNDS
            timed = {n: Timed(timed[n].rounds + more[n].rounds) for n in (FP32, ARTIFACT)}
        rows.append(SpeedRow(batch, timed[FP32].latency.p50, timed[ARTIFACT].latency.p50, ratio["median"],
                             ratio["iqr"], ratio["rounds"], decision))
    reference = {"onnxruntime": "the fp32 chain on ONNX Runtime", "executorch": "the fp32 program on ExecuTorch",
                 "litert": "the fp32 program on LiteRT"}.get(target, "the fp32 chain on OpenVINO (f32)")
    return SpeedProof(target, reference, threads, rows, cpu_features().to_dict(), min_speedup)


def faster_alternative(precision: str, target: str) -> str:
    """What to try instead of an artifact slower than fp32 on its runtime."""
    if target == "onnxruntime" and precision == "int8":
        return "write an OpenVINO IR instead (an .xml output, `target='openvino'`), where int8 convs fuse"
    if precision == "fp16":
        return "fp16 pays off on GPUs; on this CPU keep the fp32 chain, or use `precision='int8'` with `target='openvino'`"
    if precision == "bf16":
        return "bf16 needs AVX-512 BF16 or AMX to pay off; use `precision='int8'` with `target='openvino'`"
    if target in LOWERED_ENGINES and precision == "int8":
        return ("XNNPACK's int8 pays off where the CPU has int8 dot products (VNNI on x86; measured here: none on "
                "AVX2 alone); on this CPU keep the fp32 program (dirac-deploy export)")
    return "keep the fp32 chain (dirac-deploy export)"

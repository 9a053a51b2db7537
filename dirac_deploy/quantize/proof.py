"""The proof a low-precision artifact carries: how it compares with the fp32 chain on held-out data.

Logit-level numbers come from the artifact as it will run (ONNX Runtime with its optimizations, or OpenVINO):
top-1 agreement with fp32, accuracy where labels exist, and logit SQNR = 10 log10(sum y^2 / sum (y - y_q)^2).
The per-layer table gives each conv output's SQNR against fp32 on the same images; for int8 artifacts it runs
the QDQ graph (an OpenVINO int8 IR is compiled from one) with graph optimizations off (the quantized arithmetic the QDQ graph defines, with every layer
output visible), so it localizes where precision is lost rather than timing anything.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np

DEFAULT_MIN_AGREEMENT = 0.99
DEFAULT_MAX_ACCURACY_DROP = 0.5  # percentage points


def sqnr_db(ref: np.ndarray, got: np.ndarray) -> float:
    noise = float(((ref.astype(np.float64) - got) ** 2).sum())
    signal = float((ref.astype(np.float64) ** 2).sum())
    return float("inf") if noise == 0 else 10 * np.log10(signal / noise) if signal > 0 else float("-inf")


@dataclass
class LayerError:
    name: str
    form: str  # int8 | int8-residual | fp32
    output_sqnr_db: float | None  # of this layer's output against fp32, on the eval images
    weight_sqnr_db: float | None = None
    identity_dominance: float | None = None
    runs_in: str | None = None  # the precision the runtime runs it in (its optimized graph), where it tells


@dataclass
class LowPrecisionProof:
    precision: str
    method: str
    images: int
    data: str
    agreement: float
    logit_sqnr_db: float
    accuracy_fp32: float | None = None
    accuracy: float | None = None
    min_agreement: float = DEFAULT_MIN_AGREEMENT
    max_accuracy_drop: float = DEFAULT_MAX_ACCURACY_DROP
    min_sqnr_db: float | None = None
    layers: list[LayerError] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    # What the runtime really runs: {"conv": {"int8": n, "fp32": m}, "gemm": {...}} from its optimized graph
    runtime_ops: dict | None = None
    speed: dict | None = None  # speed.SpeedProof.to_dict(): latency against fp32 on the artifact's runtime

    @property
    def accuracy_drop(self) -> float | None:
        if self.accuracy is None or self.accuracy_fp32 is None:
            return None
        return 100 * (self.accuracy_fp32 - self.accuracy)

    @property
    def failures(self) -> list[str]:
        out = []
        if self.agreement < self.min_agreement:
            out.append(f"top-1 agreement {self.agreement:.2%} < {self.min_agreement:.2%}")
        drop = self.accuracy_drop
        if drop is not None and drop > self.max_accuracy_drop:
            out.append(f"accuracy drop {drop:.2f} points > {self.max_accuracy_drop:g}")
        if self.min_sqnr_db is not None and self.logit_sqnr_db < self.min_sqnr_db:
            out.append(f"logit SQNR {self.logit_sqnr_db:.1f} dB < {self.min_sqnr_db:g} dB")
        return out

    @property
    def ok(self) -> bool:
        return not self.failures

    def worst_layers(self, n: int = 3) -> list[LayerError]:
        """The quantized layers whose outputs lose the most (a layer kept in fp32 only inherits its input's
        error, so it is never named)."""
        measured = [layer for layer in self.layers if layer.output_sqnr_db is not None and layer.form != "fp32"]
        return sorted(measured, key=lambda layer: layer.output_sqnr_db or 0.0)[:n]  # measured: never None

    def describe(self) -> str:
        acc = ""
        if self.accuracy is not None:
            acc = (f", accuracy {self.accuracy:.2%} (fp32 {self.accuracy_fp32:.2%}, drop "
                   f"{self.accuracy_drop:.2f} points)")
        return (f"top-1 agreement {self.agreement:.2%}, logit SQNR {self.logit_sqnr_db:.1f} dB{acc} on "
                f"{self.images} images ({self.data})")

    def to_dict(self) -> dict:
        d = asdict(self)
        d.update(ok=self.ok, failures=self.failures, accuracy_drop=self.accuracy_drop)
        return d


def logits_proof(ref: np.ndarray, got: np.ndarray, labels: np.ndarray | None, **kw) -> LowPrecisionProof:
    agreement = float((ref.argmax(1) == got.argmax(1)).mean())
    proof = LowPrecisionProof(images=len(ref), agreement=agreement, logit_sqnr_db=sqnr_db(ref, got), **kw)
    if labels is not None:
        proof.accuracy_fp32 = float((ref.argmax(1) == labels).mean())
        proof.accuracy = float((got.argmax(1) == labels).mean())
    return proof

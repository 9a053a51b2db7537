"""The proof every transform carries: how far a candidate's logits are from its reference's.

The tolerance is max|a - b| <= rtol * max|a| with identical top-1 (rtol = 1e-4 for fp32 on CPU): relative to
the logit scale because DiracNet logits can be large. Numpy only, so the torch-free serving path uses it too.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

DEFAULT_RTOL = 1e-4


@dataclass(frozen=True)
class Proof:
    """Result of comparing a candidate against its reference on the same inputs."""

    max_abs_error: float
    max_rel_error: float  # max_abs_error / max |reference logit|
    top1_agreement: float  # fraction of inputs whose argmax agrees
    batch: int
    input_shape: tuple[int, ...]
    rtol: float = DEFAULT_RTOL
    reference: str = "unfolded model"

    @property
    def ok(self) -> bool:
        return self.max_rel_error <= self.rtol and self.top1_agreement == 1.0

    def describe(self) -> str:
        return (f"max abs error {self.max_abs_error:.3g} ({self.max_rel_error:.3g} of max|logit|, tolerance "
                f"{self.rtol:g}), top-1 agreement {self.top1_agreement:.0%} on {self.batch} seeded inputs "
                f"of shape {list(self.input_shape)} vs the {self.reference}")

    def to_dict(self) -> dict:
        d = asdict(self)
        d["input_shape"] = list(self.input_shape)
        return d


def _numpy(a) -> np.ndarray:
    if hasattr(a, "detach"):  # a torch tensor; converted without importing torch here
        a = a.detach().cpu().double().numpy()
    return np.asarray(a, dtype=np.float64)


def compare_logits(reference, candidate, *, rtol: float = DEFAULT_RTOL, input_shape: tuple[int, ...] = (),
                   reference_name: str = "unfolded model") -> Proof:
    """Proof from two logit arrays of shape [batch, classes] (numpy arrays or torch tensors)."""
    ref, cand = _numpy(reference), _numpy(candidate)
    if ref.shape != cand.shape:
        raise ValueError(f"logit shapes differ: reference {tuple(ref.shape)} vs candidate {tuple(cand.shape)}")
    finite = bool(np.isfinite(ref).all() and np.isfinite(cand).all())
    max_abs = float(np.abs(ref - cand).max()) if finite else float("inf")
    scale = float(np.abs(ref).max()) if finite else 0.0
    rel = max_abs / scale if scale > 0 else (0.0 if max_abs == 0 else float("inf"))
    agree = float((ref.argmax(1) == cand.argmax(1)).mean()) if finite else 0.0
    return Proof(max_abs, rel, agree, ref.shape[0], tuple(input_shape), rtol, reference_name)

"""Numerical proof that two models compute the same function.

`compare` runs both models in float32 eval mode on the same seeded inputs and reports max absolute and
relative logit error and top-1 agreement. The fold tolerance is max|a - b| <= rtol * max|a| with identical
top-1 (rtol = 1e-4 for fp32 on CPU): relative to the logit scale because DiracNet logits can be large.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch

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


def seeded_inputs(batch: int, channels: int, size: int, seed: int = 0) -> torch.Tensor:
    """Standard-normal images from a private generator (the global RNG is left alone)."""
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(batch, channels, size, size, generator=gen)


def compare_logits(reference: torch.Tensor, candidate: torch.Tensor, *, rtol: float = DEFAULT_RTOL,
                   input_shape: tuple[int, ...] = (), reference_name: str = "unfolded model") -> Proof:
    """Proof from two logit arrays of shape [batch, classes] (torch tensors or numpy arrays)."""
    ref = torch.as_tensor(reference, dtype=torch.float64)
    cand = torch.as_tensor(candidate, dtype=torch.float64)
    if ref.shape != cand.shape:
        raise ValueError(f"logit shapes differ: reference {tuple(ref.shape)} vs candidate {tuple(cand.shape)}")
    max_abs = float((ref - cand).abs().max())
    scale = float(ref.abs().max())
    rel = max_abs / scale if scale > 0 else (0.0 if max_abs == 0 else float("inf"))
    agree = float((ref.argmax(1) == cand.argmax(1)).double().mean())
    if not (torch.isfinite(ref).all() and torch.isfinite(cand).all()):
        rel, agree = float("inf"), 0.0
    return Proof(max_abs, rel, agree, ref.shape[0], tuple(input_shape), rtol, reference_name)


@torch.no_grad()
def compare(reference: torch.nn.Module, candidate: torch.nn.Module, inputs: torch.Tensor, *,
            rtol: float = DEFAULT_RTOL, reference_name: str = "unfolded model") -> Proof:
    """Run both modules on `inputs` and compare their logits."""
    return compare_logits(reference(inputs), candidate(inputs), rtol=rtol, input_shape=tuple(inputs.shape),
                          reference_name=reference_name)

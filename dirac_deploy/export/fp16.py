"""Which folded weights survive a cast to fp16.

Folding multiplies gamma / sqrt(running_var + eps) into the weights: a tiny running variance or a large
Dirac centre tap can push values past fp16's range (|w| > 65504 -> inf) or below its smallest normal
(2^-14 ~ 6.1e-5 -> subnormal, losing precision, or flushed to zero below 2^-24).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

FP16_MAX = 65504.0
FP16_MIN_NORMAL = 2.0**-14


@dataclass(frozen=True)
class Fp16Finding:
    tensor: str
    overflow: int  # values that become inf
    subnormal: int  # non-zero values below the smallest normal
    max_abs: float
    numel: int


def scan_fp16(state_dict: dict[str, torch.Tensor]) -> list[Fp16Finding]:
    """Findings for every floating tensor with values that overflow or become subnormal in fp16."""
    findings = []
    for name, t in state_dict.items():
        if not t.is_floating_point():
            continue
        a = t.detach().abs().double()
        overflow = int((a > FP16_MAX).sum())
        subnormal = int(((a > 0) & (a < FP16_MIN_NORMAL)).sum())
        if overflow or subnormal:
            findings.append(Fp16Finding(name, overflow, subnormal, float(a.max()), t.numel()))
    return findings

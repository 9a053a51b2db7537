"""Numeric formats of the PyTorch backends on a GPU: what a user would try before reaching for int8.

A format is `fp32`, `tf32` (fp32 tensors, TF32 tensor-core matmuls and convolutions allowed), `fp16` or `bf16`
(the model's weights and the input cast to that type), each optionally with `-cl` (channels_last memory
format, which cuDNN's tensor-core convolutions prefer). ONNX backends run the fp32 graph only: low precision
there is `quantize`'s artifacts (`bench --precision`).
"""

from __future__ import annotations

import contextlib
import copy
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

BASES = ("fp32", "tf32", "fp16", "bf16")
FORMATS = tuple(b + s for s in ("", "-cl") for b in BASES)
_DTYPES = {"fp32": torch.float32, "tf32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}


@dataclass(frozen=True)
class NumericFormat:
    name: str

    def __post_init__(self) -> None:
        if self.name not in FORMATS:
            raise ValueError(f"unknown format {self.name!r}; choose from {', '.join(FORMATS)}")

    @property
    def base(self) -> str:
        return self.name.removesuffix("-cl")

    @property
    def channels_last(self) -> bool:
        return self.name.endswith("-cl")

    @property
    def dtype(self) -> torch.dtype:
        return _DTYPES[self.base]

    @property
    def is_reference(self) -> bool:
        """Plain fp32: what every other format's agreement is measured against."""
        return self.name == "fp32"

    def apply(self, model: nn.Module, x: torch.Tensor) -> tuple[nn.Module, torch.Tensor]:
        """The model and input in this format. The model is copied unless the format is plain fp32, so a
        variant's own model is never cast in place for the rows that follow."""
        if self.is_reference:
            return model, x
        model = copy.deepcopy(model).to(dtype=self.dtype)
        x = x.to(self.dtype)
        if self.channels_last:
            model = model.to(memory_format=torch.channels_last)  # type: ignore[call-overload]  # accepted; stubs omit it
            x = x.contiguous(memory_format=torch.channels_last)
        return model, x


@contextlib.contextmanager
def tf32_allowed(allow: bool) -> Iterator[None]:
    """TF32 matmuls and cuDNN convolutions on (or off) inside the block; the previous settings after it."""
    before = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = allow
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = before


def uses_tf32(fmt: NumericFormat, fp32_tf32: bool) -> bool:
    """TF32 for this format's rows: always for `tf32`, for plain fp32 only when the user asked (--tf32)."""
    return fmt.base == "tf32" or (fmt.base == "fp32" and fp32_tf32)


@torch.no_grad()
def agreement(model: nn.Module, fmt: NumericFormat, images: torch.Tensor, device: str) -> dict:
    """How far `fmt`'s logits are from strict fp32's on the same images: top-1 agreement, logit SQNR
    (10 log10(|ref|^2 / |ref - out|^2), in dB) and the largest absolute logit difference."""
    model = model.to(device).eval()
    with tf32_allowed(False):
        ref = model(images.to(device)).float()
    m, x = fmt.apply(model, images.to(device))
    with tf32_allowed(fmt.base == "tf32"):
        out = m(x).float()
    noise = float(((ref - out) ** 2).sum())
    signal = float((ref**2).sum())
    sqnr = float("inf") if noise == 0 else 10 * np.log10(max(signal, 1e-30) / noise)
    return {"top1_agreement": float((ref.argmax(1) == out.argmax(1)).float().mean()),
            "logit_sqnr_db": None if not np.isfinite(sqnr) else sqnr,
            "max_abs_diff": float((ref - out).abs().max()), "images": int(images.shape[0]),
            "finite": bool(torch.isfinite(out).all())}

"""What the runtimes of lowered programs (ExecuTorch, LiteRT) share: the program's bytes from whatever holds them,
the conv precisions a program built here counted (a delegate's kernels cannot be listed from its bytes), and
running any batch through a program compiled for one."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np


def load(model: Any) -> bytes:
    """The program's bytes: a `ProgramArtifact`'s `model`, bytes, a lowered `export.program.Program`, or a path."""
    if isinstance(model, (bytes, bytearray, memoryview)):
        return bytes(model)
    if isinstance(getattr(model, "data", None), bytes):
        return model.data
    return Path(model).read_bytes()


def runtime_ops(model: Any) -> dict[str, dict[str, int]]:
    """The convs the delegate runs in int8 and in fp32, as the program built by `quantize` counted them.

    Raises:
        ValueError: a program without those counts (one read from a file).
    """
    counts = getattr(model, "runtime_ops", None)
    if counts is None:
        raise ValueError("an XNNPACK delegate does not list its kernels; only a program built here has counts")
    return counts


def run_in_chunks(execute: Callable[[np.ndarray], np.ndarray], batch: int, x: np.ndarray) -> np.ndarray:
    """`execute` (one call of a program compiled for `batch` images) over every image of `x`, in chunks of
    exactly `batch`, the last one zero-padded and its padding's logits dropped."""
    out = []
    for i in range(0, len(x), batch):
        chunk = np.asarray(x[i:i + batch], dtype=np.float32)
        pad = batch - len(chunk)
        if pad:
            chunk = np.concatenate([chunk, np.zeros((pad, *chunk.shape[1:]), np.float32)])
        out.append(execute(chunk)[: batch - pad])
    return np.concatenate(out)

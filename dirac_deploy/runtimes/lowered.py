"""What the runtimes of lowered programs (ExecuTorch, LiteRT) share: the program's bytes from whatever holds them,
and the conv precisions a program built here counted (a delegate's kernels cannot be listed from its bytes)."""

from __future__ import annotations

from pathlib import Path
from typing import Any


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

"""What a runtime's C++ side writes to the process's stderr while it loads a model (ExecuTorch's CPU probing,
LiteRT's "Created TensorFlow Lite XNNPACK delegate" and absl log lines): captured, so the user's terminal shows
only what is theirs to act on, and kept, so a failed load can name the runtime's own error line."""

from __future__ import annotations

import contextlib
import logging
import os
import tempfile
from collections.abc import Iterator


@contextlib.contextmanager
def native_stderr_kept(lines: list[str]) -> Iterator[None]:
    """The process's stderr (file descriptor 2, where ExecuTorch's C++ logs its CPU probing at every method
    load) captured into `lines` for the duration. Held for a load, never for a run: another thread writing to
    stderr in that moment is captured too."""
    with tempfile.TemporaryFile() as sink:
        saved = os.dup(2)
        try:
            os.dup2(sink.fileno(), 2)
            yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            sink.seek(0)
            lines.extend(sink.read().decode("utf-8", "replace").splitlines())


def quiet_imports() -> None:
    """ExecuTorch's and litert-torch's Python sides import torchao, which logs a warning for each CUDA kernel library a CPU
    machine cannot load, and torch's pytree, which logs a deprecation: neither is the user's to act on."""
    for name in ("torchao", "torch.utils._pytree"):
        logging.getLogger(name).setLevel(logging.ERROR)


def with_native_error(message: str, logged: list[str]) -> str:
    """`message` followed by the last error line the C++ side logged while it was captured, if any."""
    errors = [line for line in logged if "rror" in line]
    return f"{message} ({errors[-1][:200]})" if errors else message

"""The ExecuTorch engine: a `.pte` program (the folded chain lowered to XNNPACK) run by ExecuTorch's own
runtime (`executorch.runtime`), the runtime a phone or a board runs it with.

A program is compiled for one batch size (ExecuTorch's dynamic batch is unreliable: one program per batch
size); `run` takes any batch, in chunks of the program's, the last one padded. Every runner loads its own
program and method (a method is not safe to run from two threads). `threads` resizes XNNPACK's threadpool,
which is process-wide. Imports executorch (which links libtorch) only where used: `pip install
'dirac-deploy[executorch]'`, which pins it with the torch it was built against.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from .._optional import require
from .lowered import load, run_in_chunks, runtime_ops  # noqa: F401  (this engine's load and runtime_ops)
from .native_log import native_stderr_kept, quiet_imports, with_native_error


class Loaded:
    """A program and one of its methods, held together with the bytes they were loaded from: a method points
    into its program, and the program into the buffer, so none may be freed while the method runs."""

    def __init__(self, data: bytes, name: str = "forward", threads: int | None = None):
        quiet_imports()
        runtime = require("executorch.runtime")
        logged: list[str] = []
        self.data = data
        try:
            with native_stderr_kept(logged):  # the C++ side's CPU probing and threadpool lines
                if threads:
                    from executorch.extension.pybindings import portable_lib

                    portable_lib._unsafe_reset_threadpool(int(threads))  # process-wide, as PyTorch's threads are
                self.program = runtime.Runtime.get().load_program(data)
                self.method = self.program.load_method(name)
        except Exception as e:
            raise RuntimeError(with_native_error(str(e), logged)) from None


class Runner:
    """A program on ExecuTorch's runtime (XNNPACK delegate on the CPU)."""

    engine = "executorch"

    # `batch` is the program's own (read from it); XNNPACK's threadpool has no spin setting for `shared_cores`
    def __init__(self, model: Any, *, threads: int | None = None, precision: str | None = None, device: str = "cpu",
                 batch: int | None = None, shared_cores: bool = False):  # noqa: ARG002
        if device != "cpu":
            raise RuntimeError("ExecuTorch runs on the CPU here")
        self.loaded = Loaded(load(model), threads=threads)  # keeps the program and its bytes alive
        self.method = self.loaded.method
        sizes = tuple(self.method.metadata.input_tensor_meta(0).sizes())
        self.batch = int(sizes[0])  # the program's own batch: `run` feeds it chunks of exactly this size
        self.threads, self.precision, self.device = threads, precision, device

    def _execute(self, chunk: np.ndarray) -> np.ndarray:
        import torch

        out = self.method.execute([torch.from_numpy(np.ascontiguousarray(chunk, dtype=np.float32))])[0]
        return out.detach().numpy().copy()

    def run(self, x: np.ndarray) -> np.ndarray:
        return run_in_chunks(self._execute, self.batch, x)

    def bind(self, x: Any) -> Callable[[], object]:
        """The call to time: every image of `x`, in the program's batch (as `run` feeds them)."""
        import torch

        x = np.ascontiguousarray(np.asarray(x), dtype=np.float32)
        chunks = [torch.from_numpy(x[i:i + self.batch]) for i in range(0, len(x) - self.batch + 1, self.batch)]
        loaded = self.loaded  # the call holds the program and its bytes: a method outliving them would crash

        def call():
            for chunk in chunks:
                loaded.method.execute([chunk])
        return call

"""The PyTorch engine: a module run eagerly, compiled by `torch.compile` (inductor, frozen weights), or
replayed as a CUDA graph.

`bind(x)` is the prepare step a benchmark leaves out of its timing: it moves nothing, compiles (on the first
call, one static shape) or captures the graph, and returns the call to time on the preallocated `x`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

COMPILE_MODES = {"default": None, "max-autotune": "max-autotune"}


def load(model: Any) -> Any:
    """A module in eval mode (a module is what this engine runs; files are opened by the artifacts layer)."""
    return model.eval()


class Runner:
    """A module on `device`. `threads` sets PyTorch's intra-op threads, which are process-wide: every torch
    runner in the process gets the last value set."""

    engine = "torch"

    def __init__(self, module: Any, *, threads: int | None = None, batch: int | None = None,
                 precision: str | None = None, device: str = "cpu", compile: str | None = None,
                 cuda_graph: bool = False, shared_cores: bool = False):  # noqa: ARG002 (PyTorch has no spin setting)
        import torch

        if compile is not None and compile not in COMPILE_MODES:
            raise ValueError(f"unknown torch.compile mode {compile!r}; choose from {', '.join(COMPILE_MODES)}")
        if cuda_graph and device != "cuda":
            raise RuntimeError("CUDA graphs need device 'cuda'")
        if threads:
            torch.set_num_threads(threads)
        self.module, self.threads, self.batch, self.precision, self.device = module, threads, batch, precision, device
        self.compile, self.cuda_graph = compile, cuda_graph

    def run(self, x: np.ndarray) -> np.ndarray:
        import torch

        x = x if x.flags.writeable else x.copy()  # binary request bodies are read-only views
        with torch.inference_mode():
            y = self.module(torch.from_numpy(np.ascontiguousarray(x)).to(self.device))
        return y.float().cpu().numpy()

    def bind(self, x: Any) -> Callable[[], object]:
        """The call to time on `x` (a tensor on the runner's device, in the module's dtype)."""
        if self.cuda_graph:
            return _cuda_graph_call(self.module, x)
        if self.compile is not None:
            return _compiled_call(self.module, x, COMPILE_MODES[self.compile])
        import torch

        def call():
            with torch.inference_mode():
                return self.module(x)
        return call


def _compiled_call(module: Any, x: Any, mode: str | None) -> Callable[[], object]:
    """torch.compile with freezing (parameters become constants the compiler can fold), compiled on the
    first call here so that the compile is part of the prepare, not of the timed calls."""
    import torch
    import torch._inductor.config as inductor_config

    with torch.no_grad(), inductor_config.patch(freezing=True):
        compiled = torch.compile(module, dynamic=False, mode=mode)
        compiled(x)

    def call():
        with torch.no_grad(), inductor_config.patch(freezing=True):
            return compiled(x)
    return call


def _cuda_graph_call(module: Any, x: Any) -> Callable[[], object]:
    # Capture after warm-up on a side stream, as the CUDA graphs docs prescribe; replay reuses x's memory.
    import torch

    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream), torch.inference_mode():
        for _ in range(3):
            module(x)
    torch.cuda.current_stream().wait_stream(stream)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph), torch.inference_mode():
        module(x)
    return graph.replay

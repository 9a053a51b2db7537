"""The LiteRT engine: a `.tflite` program (the folded chain converted by litert-torch) run by LiteRT's own
interpreter (`ai_edge_litert`), with its default XNNPACK delegate, the runtime an Android phone runs it with.

A program is compiled for one batch size; `run` takes any batch, in chunks of the program's, the last one
padded. An int8 program takes and returns int8 tensors: the runner quantizes the float input and dequantizes
the logits with the program's own scales, as the caller on a phone must (and `bind` times that too). Every
runner has its own interpreter (one is not safe to run from two threads). Imports ai_edge_litert only where
used: `pip install 'dirac-deploy[litert]'`.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from typing import Any

import numpy as np

from .._optional import require
from .lowered import load, run_in_chunks, runtime_ops  # noqa: F401  (this engine's load and runtime_ops)
from .native_log import native_stderr_kept, with_native_error

DELEGATE_OP = "DELEGATE"


def interpreter(data: bytes, threads: int | None = None):
    """LiteRT's interpreter on `data`, its tensors allocated (which is when the XNNPACK delegate takes its ops);
    what LiteRT's C++ side logs meanwhile is kept out of the terminal, and its error line named on failure."""
    interp = require("ai_edge_litert.interpreter")
    logged: list[str] = []
    try:
        with native_stderr_kept(logged):
            it = interp.Interpreter(model_content=data, num_threads=int(threads) if threads else None)
            it.allocate_tensors()
    except Exception as e:  # the interpreter raises ValueError / RuntimeError for a program it cannot run
        raise RuntimeError(with_native_error(str(e), logged)) from None
    return it


def delegation(it) -> tuple[int, dict[str, int]]:
    """(ops the XNNPACK delegate runs, {op: count} of the rest) of an allocated interpreter. The interpreter
    lists the program's own ops, then one DELEGATE node per delegated partition; a partition is what lies
    between its node's inputs and outputs, so an op is delegated when a walk back from some delegate's outputs
    to its inputs reaches it."""
    ops = it._get_ops_details()  # the interpreter's only listing of its nodes (private, kept since TF 2.x)
    own = [o for o in ops if o["op_name"] != DELEGATE_OP]
    producer = {int(t): o["index"] for o in own for t in o["outputs"]}
    by_index = {o["index"]: o for o in own}
    inside: set[int] = set()
    for d in (o for o in ops if o["op_name"] == DELEGATE_OP):
        boundary = {int(t) for t in d["inputs"]}
        todo = [int(t) for t in d["outputs"]]
        while todo:
            t = todo.pop()
            node = producer.get(t)
            if t in boundary or node is None or node in inside:
                continue
            inside.add(node)
            todo.extend(int(u) for u in by_index[node]["inputs"] if int(u) >= 0)
    rest = Counter(o["op_name"] for o in own if o["index"] not in inside)
    return len(inside), dict(rest)


class Runner:
    """A program on LiteRT's interpreter (XNNPACK delegate on the CPU)."""

    engine = "litert"

    # `batch` is the program's own (read from it); XNNPACK's threadpool has no spin setting for `shared_cores`
    def __init__(self, model: Any, *, threads: int | None = None, precision: str | None = None, device: str = "cpu",
                 batch: int | None = None, shared_cores: bool = False):  # noqa: ARG002
        if device != "cpu":
            raise RuntimeError("LiteRT runs on the CPU here")
        self.interpreter = interpreter(load(model), threads)
        (inp,), (out,) = self.interpreter.get_input_details(), self.interpreter.get_output_details()
        self._in, self._out = inp["index"], out["index"]
        self._in_type = inp["dtype"]
        self._in_q, self._out_q = _scale(inp), _scale(out)
        self.batch = int(inp["shape"][0])  # the program's own batch: `run` feeds it chunks of exactly this size
        self.threads, self.precision, self.device = threads, precision, device

    def _input(self, chunk: np.ndarray) -> np.ndarray:
        if self._in_q is None:
            return np.ascontiguousarray(chunk, dtype=np.float32)
        scale, zero = self._in_q
        info = np.iinfo(self._in_type)
        return np.clip(np.rint(chunk / scale) + zero, info.min, info.max).astype(self._in_type)

    def _execute(self, chunk: np.ndarray) -> np.ndarray:
        self.interpreter.set_tensor(self._in, self._input(chunk))
        self.interpreter.invoke()
        y = self.interpreter.get_tensor(self._out)
        if self._out_q is None:
            return np.array(y, dtype=np.float32)
        scale, zero = self._out_q
        return ((y.astype(np.float32) - zero) * scale).astype(np.float32)

    def run(self, x: np.ndarray) -> np.ndarray:
        return run_in_chunks(self._execute, self.batch, x)

    def bind(self, x: Any) -> Callable[[], object]:
        """The call to time: every image of `x`, in the program's batch, quantized first where the program
        takes int8 (the caller's work on a phone too)."""
        x = np.ascontiguousarray(np.asarray(x), dtype=np.float32)
        chunks = [x[i:i + self.batch] for i in range(0, len(x) - self.batch + 1, self.batch)]
        it, index, prepare = self.interpreter, self._in, self._input

        def call():
            for chunk in chunks:
                it.set_tensor(index, prepare(chunk))
                it.invoke()
        return call


def _scale(detail: dict) -> tuple[float, int] | None:
    """(scale, zero point) of a quantized input or output; None for a float one."""
    if np.dtype(detail["dtype"]).kind == "f":
        return None
    scale, zero = detail["quantization"]
    return float(scale), int(zero)

"""A model behind the server: loaded once, validated, run on ONNX Runtime or PyTorch.

MODEL may be an `.onnx` from `export`, a `plain.pth` from `fold`, or any checkpoint `fold` reads (folded and
verified at start). With the onnxruntime runtime a `.pth` is exported in memory through `export_onnx`, so it
passes the same audit and parity check as `dirac-deploy export`.
"""

from __future__ import annotations

import copy
import os
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
import torch

from ..checkpoint import LoadOptions
from ..errors import DiracDeployError
from ..fold.from_checkpoint import plain_from_file
from ..export.onnx import INPUT_NAME, OUTPUT_NAME, export_onnx
from .batching import DynamicBatcher
from .instances import InstancePool, Runner

RUNTIMES = ("onnxruntime", "torch")
_NAME = re.compile(r"^[A-Za-z0-9_.-]+$")


@dataclass
class ModelSource:
    name: str
    path: Path


def parse_model_args(args: list[str]) -> list[ModelSource]:
    """`PATH`, `NAME=PATH` or a directory (every .onnx / .pth / .pt / .pt7 inside) -> named sources."""
    sources: list[ModelSource] = []
    for arg in args:
        name, sep, path = arg.partition("=")
        if not sep:
            name, path = "", arg
        p = Path(path)
        if p.is_dir() and not name:
            files = sorted(f for f in p.iterdir() if f.suffix in (".onnx", ".pth", ".pt", ".pt7") and f.is_file())
            if not files:
                raise DiracDeployError(f"no models in directory {p} (expected .onnx, .pth, .pt or .pt7 files)")
            sources += [ModelSource(f.name.split(".")[0], f) for f in files]
        else:
            sources.append(ModelSource(name or p.name.split(".")[0], p))
    seen = set()
    for s in sources:
        if not _NAME.match(s.name):
            raise DiracDeployError(f"bad model name {s.name!r}: use letters, digits, '_', '-' and '.' (NAME=PATH sets it)")
        if s.name in seen:
            raise DiracDeployError(f"two models are named {s.name!r}; name them explicitly with NAME=PATH")
        seen.add(s.name)
    return sources


class ServedModel:
    """One loaded model: `infer(batch) -> logits` on a pool of instances, plus the metadata the protocol reports.
    With `max_batch` > 1, concurrent `infer_async` calls are batched dynamically (`batching`)."""

    def __init__(self, name: str, input_shape: tuple[int, int, int], num_classes: int, runtime: str,
                 runners: list[Runner], source: Path, info: dict, max_batch: int = 1):
        self.name, self.input_shape, self.num_classes = name, input_shape, num_classes
        self.runtime, self.source, self.info = runtime, source, info
        self.instances = InstancePool(runners, name)
        self.max_batch = max_batch
        self._batcher = DynamicBatcher(self.instances, max_batch) if max_batch > 1 else None

    def infer(self, x: np.ndarray) -> np.ndarray:
        """Logits for a batch, computed in the calling thread."""
        return self.instances.run(x)

    async def infer_async(self, x: np.ndarray, timing: dict | None = None) -> np.ndarray:
        """Logits for a batch, computed on the model's instance threads (the event loop stays free).
        `timing`, if given, gets the "start" and "end" of the run on the instance thread."""
        if self._batcher is not None:
            return await self._batcher.infer(x, timing)
        return await self.instances.run_async(x, timing)

    def metadata(self) -> dict:
        return {"name": self.name, "versions": ["1"], "platform": f"{self.runtime}",
                "inputs": [{"name": INPUT_NAME, "datatype": "FP32", "shape": [-1, *self.input_shape]}],
                "outputs": [{"name": OUTPUT_NAME, "datatype": "FP32", "shape": [-1, self.num_classes]}],
                "parameters": {**{k: str(v) for k, v in self.info.items()}, "instances": str(self.instances.size),
                               "max_batch": str(self.max_batch)}}


def default_threads(instances: int) -> int | None:
    """Intra-op threads per instance when none are given: the runtime's default for one instance, else the
    usable cores shared out so that instances x threads does not oversubscribe the machine."""
    if instances == 1:
        return None
    return max(1, len(os.sched_getaffinity(0)) // instances)


def _ort_runners(model: onnx.ModelProto, threads: int | None, instances: int) -> list[Runner]:
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    opts.intra_op_num_threads = threads or 0
    serialized = model.SerializeToString()

    def runner() -> Runner:
        session = ort.InferenceSession(serialized, opts, providers=["CPUExecutionProvider"])
        return lambda x: session.run([OUTPUT_NAME], {INPUT_NAME: x})[0]

    return [runner() for _ in range(instances)]


def _torch_runners(plain: torch.nn.Module, threads: int | None, instances: int) -> list[Runner]:
    if threads:
        torch.set_num_threads(threads)  # process-wide in PyTorch: every instance gets this many

    def runner(module: torch.nn.Module) -> Runner:
        @torch.inference_mode()
        def run(x: np.ndarray) -> np.ndarray:
            x = x if x.flags.writeable else x.copy()  # binary inputs are read-only views of the body
            return module(torch.from_numpy(np.ascontiguousarray(x))).numpy()

        return run

    # Each instance owns its module (the pool gives a runner to one request at a time), so no lock is needed.
    return [runner(plain if i == 0 else copy.deepcopy(plain)) for i in range(instances)]


def _onnx_io(model: onnx.ModelProto, path: Path) -> tuple[tuple[int, int, int], int]:
    inputs = [i for i in model.graph.input if i.name not in {t.name for t in model.graph.initializer}]
    if [i.name for i in inputs] != [INPUT_NAME] or [o.name for o in model.graph.output] != [OUTPUT_NAME]:
        raise DiracDeployError(f"{path}: expected one input '{INPUT_NAME}' and one output '{OUTPUT_NAME}' "
                               f"(as `dirac-deploy export` writes), found inputs {[i.name for i in inputs]} and "
                               f"outputs {[o.name for o in model.graph.output]}")
    dims = [d.dim_value for d in inputs[0].type.tensor_type.shape.dim]
    out = [d.dim_value for d in model.graph.output[0].type.tensor_type.shape.dim]
    if len(dims) != 4 or not all(dims[1:]) or len(out) != 2 or not out[1]:
        raise DiracDeployError(f"{path}: input must be [batch, C, H, W] and output [batch, classes] with fixed C, H, "
                               f"W and classes; found {dims} and {out}")
    return (dims[1], dims[2], dims[3]), out[1]


def load_served_model(source: ModelSource, runtime: str = "onnxruntime", threads: int | None = None,
                      options: LoadOptions | None = None, instances: int = 1, max_batch: int = 1) -> ServedModel:
    """Load, verify and prepare one model for serving, as `instances` independent runners with `threads`
    intra-op threads each (default: `default_threads(instances)`), batching concurrent requests up to
    `max_batch` images."""
    if instances < 1 or max_batch < 1:
        raise DiracDeployError(f"instances and max_batch must be at least 1, got {instances} and {max_batch}")
    threads = threads or default_threads(instances)
    if runtime not in RUNTIMES:
        raise DiracDeployError(f"unknown runtime {runtime!r}; choose from {', '.join(RUNTIMES)}")
    path = source.path
    if path.suffix == ".onnx":
        if runtime != "onnxruntime":
            raise DiracDeployError(f"{path} is ONNX; serve it with --runtime onnxruntime")
        if not path.is_file():
            raise DiracDeployError(f"no such file: {path}")
        try:
            model = onnx.load(path)
            onnx.checker.check_model(model)
        except Exception as e:  # protobuf decode errors have no common base class
            raise DiracDeployError(f"{path} is not a valid ONNX model: {str(e).splitlines()[0] if str(e) else type(e).__name__}") from None
        shape, classes = _onnx_io(model, path)
        info = {p.key: p.value for p in model.metadata_props}
        return ServedModel(source.name, shape, classes, runtime, _ort_runners(model, threads, instances), path,
                           info, max_batch)
    plain, meta, _, how = plain_from_file(path, options)
    size = int(meta.get("input_size", 224))
    shape = (plain.layers[0].args["in_channels"], size, size)
    classes = plain.layers[-1].args["out_features"]
    info = {"architecture": meta.get("architecture", {}).get("name", ""), "source": how,
            "source_sha256": meta.get("source", {}).get("sha256", "")}
    if runtime == "onnxruntime":
        exported = export_onnx(plain, None, input_shape=shape, meta=meta, check_batches=(1, 2))
        return ServedModel(source.name, shape, classes, runtime, _ort_runners(exported.model, threads, instances),
                           path, info, max_batch)
    return ServedModel(source.name, shape, classes, runtime, _torch_runners(plain, threads, instances), path, info,
                       max_batch)

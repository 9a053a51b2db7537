"""A model behind the server: loaded once, validated, run on ONNX Runtime or PyTorch.

MODEL may be an `.onnx` from `export` (served without torch), a `plain.pth` from `fold`, or any checkpoint
`fold` reads (folded and verified at start). With the onnxruntime runtime a `.pth` is exported in memory
through the same verified export as `dirac-deploy export` (audit and parity check).
"""

from __future__ import annotations

import copy
import os
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .._optional import model_config_pb2
from ..errors import DiracDeployError
from ..fileio import model_file_kind
from ..onnxfile import audit_artifact, check_artifact, read_onnx
from ..runtime import ort_session
from ..spec import INPUT_NAME, OUTPUT_NAME
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


def model_config(model: ServedModel, max_body_bytes: int):
    """Triton's `ModelConfig` for a served model (tritonclient's protobuf; get_model_config over HTTP and gRPC).

    `max_batch_size` is the largest batch one request can carry under the body limit (the server takes any
    batch up to it; `dims` exclude the batch axis); dynamic batching is listed when `--max-batch` is on.
    """
    pb = model_config_pb2()

    per_image = 4 * int(np.prod(model.input_shape))
    platform = "onnxruntime_onnx" if model.runtime == "onnxruntime" else "pytorch_libtorch"
    config = pb.ModelConfig(name=model.name, platform=platform, max_batch_size=max(1, max_body_bytes // per_image))
    config.input.add(name=INPUT_NAME, data_type=pb.TYPE_FP32, dims=list(model.input_shape))
    config.output.add(name=OUTPUT_NAME, data_type=pb.TYPE_FP32, dims=[model.num_classes])
    config.instance_group.add(count=model.instances.size, kind=pb.ModelInstanceGroup.KIND_CPU)
    if model.max_batch > 1:
        config.dynamic_batching.max_queue_delay_microseconds = 0
    return config


def default_threads(instances: int) -> int | None:
    """Intra-op threads per instance when none are given: the runtime's default for one instance, else the
    usable cores shared out so that instances x threads does not oversubscribe the machine."""
    if instances == 1:
        return None
    return max(1, len(os.sched_getaffinity(0)) // instances)


def _ort_runners(model, threads: int | None, instances: int) -> list[Runner]:
    serialized = model.SerializeToString()

    def runner() -> Runner:
        session = ort_session(serialized, threads=threads)
        return lambda x: session.run([OUTPUT_NAME], {INPUT_NAME: x})[0]

    return [runner() for _ in range(instances)]


def _torch_runners(plain, threads: int | None, instances: int) -> list[Runner]:
    import torch

    if threads:
        torch.set_num_threads(threads)  # process-wide in PyTorch: every instance gets this many

    def runner(module) -> Runner:
        @torch.inference_mode()
        def run(x: np.ndarray) -> np.ndarray:
            x = x if x.flags.writeable else x.copy()  # binary inputs are read-only views of the body
            return module(torch.from_numpy(np.ascontiguousarray(x))).numpy()

        return run

    # Each instance owns its module (the pool gives a runner to one request at a time), so no lock is needed.
    return [runner(plain if i == 0 else copy.deepcopy(plain)) for i in range(instances)]


def _onnx_model(source: ModelSource, runtime: str, threads: int | None, instances: int, max_batch: int,
                verify: bool) -> ServedModel:
    """An exported .onnx: audited and re-checked against its parity probe, without torch."""
    if runtime != "onnxruntime":
        raise DiracDeployError(f"{source.path} is ONNX; serve it with --runtime onnxruntime")
    art = read_onnx(source.path)
    if verify:
        audit_artifact(art)  # before ONNX Runtime sees the graph (custom ops fail there with less to go on)
    try:
        runners = _ort_runners(art.model, threads, instances)
    except Exception as e:  # ORT raises its own types for graphs it cannot load (custom ops, bad attributes)
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise DiracDeployError(f"ONNX Runtime cannot load {source.path}: {first[:300]}") from None
    info = {"architecture": art.architecture, "source": "ONNX file",
            "source_sha256": art.metadata.get("dirac_deploy.source_sha256", "")}
    if verify:
        probe = art.probe()
        check_artifact(art, session=_RunnerSession(runners[0]) if probe is not None else None)
        info["verified"] = "audit and parity probe"
    else:
        info["verified"] = "no (--no-verify)"
    return ServedModel(source.name, art.input_shape, art.num_classes, runtime, runners, source.path, info, max_batch)


class _RunnerSession:
    """`session.run` over a runner, so the probe check runs on the very session that will serve."""

    def __init__(self, runner: Runner):
        self.runner = runner

    def run(self, outputs, feeds):
        return [self.runner(feeds[INPUT_NAME])]


def load_served_model(source: ModelSource, runtime: str = "onnxruntime", threads: int | None = None,
                      options=None, instances: int = 1, max_batch: int = 1, verify: bool = True) -> ServedModel:
    """Load, verify and prepare one model for serving, as `instances` independent runners with `threads`
    intra-op threads each (default: `default_threads(instances)`), batching concurrent requests up to
    `max_batch` images.

    An `.onnx` is loaded without torch: audited and run against the parity probe `export` recorded in it
    (`verify=False` skips both). A plain.pth or checkpoint goes through the pipeline (`load_model`: folded
    and verified) and, on ONNX Runtime, through the same verified export as `dirac-deploy export`.
    """
    if instances < 1 or max_batch < 1:
        raise DiracDeployError(f"instances and max_batch must be at least 1, got {instances} and {max_batch}")
    threads = threads or default_threads(instances)
    if runtime not in RUNTIMES:
        raise DiracDeployError(f"unknown runtime {runtime!r}; choose from {', '.join(RUNTIMES)}")
    if model_file_kind(source.path) == "onnx":
        return _onnx_model(source, runtime, threads, instances, max_batch, verify)
    from ..pipeline import load_model  # torch from here on

    loaded = load_model(source.path, options)
    info = {"architecture": loaded.name, "source": loaded.source,
            "source_sha256": loaded.meta.get("source", {}).get("sha256", "")}
    if runtime == "onnxruntime":
        from ..export.from_file import verified_onnx

        runners = _ort_runners(verified_onnx(loaded).model, threads, instances)
    else:
        runners = _torch_runners(loaded.plain, threads, instances)
    return ServedModel(source.name, loaded.input_shape, loaded.num_classes, runtime, runners, source.path, info,
                       max_batch)

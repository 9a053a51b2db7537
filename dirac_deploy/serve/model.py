"""A model behind the server: an artifact, checked once, run on ONNX Runtime, OpenVINO or PyTorch.

The server serves artifacts and builds none: `ServedModel.from_artifact` takes an `OnnxArtifact` (from
`export` or `quantize`, served without torch), an `IrArtifact` (`quantize --target openvino`) or, on the
torch runtime, a `PlainArtifact`. Turning a checkpoint or plain.pth into a verified ONNX graph is the
application's step before the server starts (`dirac_deploy.serve_files`). OpenVINO runs a model at the
precision it records (an IR from `quantize --precision bf16` asks for bf16), else fp32.
"""

from __future__ import annotations

import copy
import os
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .._optional import available, install_hint, model_config_pb2
from ..artifacts.base import Artifact
from ..artifacts.ir import runtime_reason
from ..artifacts.onnx import OnnxArtifact, audit_artifact
from ..errors import DiracDeployError, MissingDependencyError
from ..kinds import ArtifactKind, kind_of
from ..runtimes import Runner as EngineRunner
from ..runtimes import build, engine, engines, load
from ..spec import INPUT_NAME, OUTPUT_NAME
from .batching import DynamicBatcher
from .instances import InstancePool, Runner

_NAME = re.compile(r"^[A-Za-z0-9_.-]+$")
MODEL_SUFFIXES = (".onnx", ".xml", ".pte", ".tflite", ".pth", ".pt", ".pt7")  # what a directory of models is scanned for


@dataclass
class ModelSource:
    name: str
    path: Path
    runtime: str | None = None  # None: `default_runtime` of the file
    kind: ArtifactKind | None = None  # settled by `check_sources`, so the file is sniffed once


def default_runtime(path: Path) -> str:
    """The runtime a file is served on when none is named: an OpenVINO IR on OpenVINO, anything else (an
    .onnx from export or quantize, a plain.pth, a checkpoint) on ONNX Runtime."""
    return kind_of(path).default_runtime


def _split_runtime(arg: str) -> tuple[str, str | None]:
    head, at, tail = arg.rpartition("@")
    return (head, tail) if at and tail in engines(serving=True) else (arg, None)


def parse_model_args(args: list[str], runtime: str | None = None) -> list[ModelSource]:
    """`[NAME=]PATH[@RUNTIME]` or a directory (every model file inside: `MODEL_SUFFIXES`) -> named sources.
    A model's runtime: its own `@RUNTIME`, else `runtime` (the --runtime option), else `default_runtime`.
    A name not given is the file's name without suffixes; when two such names meet (q.onnx and q.xml, as
    `quantize` writes them), the later file is told apart by its runtime (q-openvino), else by its suffix."""
    sources: list[ModelSource] = []
    given: set[int] = set()  # indices of the sources named with NAME=PATH
    for arg in args:
        arg, own = _split_runtime(arg)
        name, sep, path = arg.partition("=")
        if not sep:
            name, path = "", arg
        p = Path(path)
        if p.is_dir() and not name:
            files = sorted(f for f in p.iterdir() if f.suffix in MODEL_SUFFIXES and f.is_file())
            if not files:
                raise DiracDeployError(f"no models in directory {p} (expected {', '.join(MODEL_SUFFIXES)} files)")
            sources += [ModelSource(f.name.split(".")[0], f, own or runtime) for f in files]
        else:
            if name:
                given.add(len(sources))
            sources.append(ModelSource(name or p.name.split(".")[0], p, own or runtime))
    seen: set[str] = set()
    for i, s in enumerate(sources):
        if s.name in seen and i not in given:
            s.name = _distinct_name(s, seen)
        if not _NAME.match(s.name):
            raise DiracDeployError(f"bad model name {s.name!r}: use letters, digits, '_', '-' and '.' (NAME=PATH sets it)")
        if s.name in seen:
            raise DiracDeployError(f"two models are named {s.name!r}; name them explicitly with NAME=PATH")
        seen.add(s.name)
    return sources


def _distinct_name(source: ModelSource, taken: set[str]) -> str:
    """`name-RUNTIME`, else `name-SUFFIX`, for a default name another model already has (the name unchanged
    when neither is free: the caller then asks for NAME=PATH)."""
    try:
        runtime = source.runtime or default_runtime(source.path)
    except DiracDeployError:  # a missing or unreadable file: check_sources says so, with the file's name
        runtime = None
    for candidate in (f"{source.name}-{runtime}" if runtime else None,
                      f"{source.name}-{source.path.suffix.lstrip('.')}" if source.path.suffix else None):
        if candidate and candidate not in taken:
            return candidate
    return source.name


def check_sources(sources: list[ModelSource]) -> list[ModelSource]:
    """Every model's file, kind, runtime and dependencies checked before any model loads; each source gets its
    runtime settled. A failure names the model and the fix.

    Raises:
        DiracDeployError: a missing or unreadable file, a runtime that cannot run that kind of file, or a
            runtime that is not installed.
    """
    checked = []
    for s in sources:
        kind = kind_of(s.path)  # missing, empty, unknown content: one line naming the file
        runtime = s.runtime or kind.default_runtime
        if runtime not in engines(serving=True):
            raise DiracDeployError(f"{s.name}: unknown runtime {runtime!r}; choose from "
                                   f"{', '.join(engines(serving=True))}")
        if runtime not in kind.runtimes:
            raise DiracDeployError(f"{s.name}: {s.path} is {kind.description}; serve it on "
                                   f"{' or '.join(kind.runtimes)} ({s.path}@{kind.default_runtime}, or leave the "
                                   f"runtime out: it defaults to {kind.default_runtime})")
        needed = engine(runtime)
        if not available(needed.package):
            raise MissingDependencyError(f"{s.name} is to run on {needed.label}, which is not installed: "
                                         f"{install_hint(needed.package)}")
        if kind.needs_torch and not available("torch"):
            raise MissingDependencyError(f"{s.name}: {s.path} is a PyTorch file; serving it needs PyTorch, which is "
                                         f"not installed here (the slim image serves exported .onnx only): export "
                                         f"it with `dirac-deploy export {s.path.name} --onnx {s.path.stem}.onnx` "
                                         f"where torch is installed, or use the full image")
        checked.append(ModelSource(s.name, s.path, runtime, kind))
    return checked


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

    def use_batcher(self, batcher) -> None:
        """Batch concurrent `infer_async` calls with `batcher` (anything with `async infer(x, timing)`) instead
        of our own dynamic batching; an engine that brings its own (Ray Serve's `@serve.batch`) plugs in here."""
        self._batcher = batcher

    @classmethod
    def from_artifact(cls, name: str, art, runtime: str, *, threads: int | None = None, instances: int = 1,
                      max_batch: int = 1, verify: bool = True) -> ServedModel:
        """Serve an artifact: `instances` independent runners with `threads` intra-op threads each (default:
        `default_threads(instances)`), concurrent requests batched up to `max_batch` images. The artifact's
        own `check` runs on the very runner that will serve (`verify=False` skips it): an `OnnxArtifact` is
        audited and run against its parity probe, an `IrArtifact` against its own probe, a `PlainArtifact`
        (torch runtime only) against its chain in float64.

        Raises:
            DiracDeployError: a runtime that cannot run this artifact, or a failed check.
        """
        if instances < 1 or max_batch < 1:
            raise DiracDeployError(f"instances and max_batch must be at least 1, got {instances} and {max_batch}")
        if runtime not in engines(serving=True):
            raise DiracDeployError(f"unknown runtime {runtime!r}; choose from {', '.join(engines(serving=True))}")
        threads = threads or default_threads(instances)
        runners = _runners(art, runtime, threads, instances, verify)
        prov = art.provenance
        info = {"architecture": art.name, "source": art.source, "source_sha256": prov.source_sha256,
                "precision": prov.precision or "fp32",
                "verified": art.verified_by if verify else "no (asked not to verify)"}
        info.update(preprocessing(art))
        return cls(name, art.input_shape, art.num_classes, runtime, [r.run for r in runners], art.path, info,
                   max_batch)

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
                               # images one run may gather from concurrent requests (--max-batch), not the
                               # most one request may carry (the config's max_batch_size, from the body limit)
                               "dynamic_batch_max_images": str(self.max_batch)}}


def preprocessing(art) -> dict[str, str]:
    """What a client must do to an image before sending it, from the artifact's provenance, as OIP model
    metadata `parameters` (strings): layout, size, scaling, and the per-channel mean and std with where they
    came from (a checkpoint's record, the command line, or an assumed default)."""
    import json

    prov = art.provenance
    c, h, w = art.input_shape
    out = {"input_layout": "NCHW", "input_size": f"{h}x{w}", "input_channels": str(c),
           "preprocessing": "image scaled to [0, 1] (uint8: / 255), resized to input_size, then (x - mean) / std "
                            "per channel"}
    if prov.mean is not None and prov.std is not None:
        out["mean"] = json.dumps([round(v, 6) for v in prov.mean])
        out["std"] = json.dumps([round(v, 6) for v in prov.std])
        source = prov.origins.get("normalization")
        if source:
            out["normalization_source"] = source
    else:
        out["preprocessing"] = "not recorded in the model file: ask its author"
    return out


def max_request_batch(input_shape: tuple[int, ...], max_body_bytes: int) -> int:
    """The most images one request may carry: as many fp32 images as fit in the body limit."""
    per_image = 4 * int(np.prod(input_shape, dtype=np.float64))
    return max(1, int(max_body_bytes // per_image))


def model_config(model: ServedModel, max_body_bytes: int):
    """Triton's `ModelConfig` for a served model (tritonclient's protobuf; get_model_config over HTTP and gRPC).

    `max_batch_size` is the largest batch one request can carry under the body limit (the server takes any
    batch up to it; `dims` exclude the batch axis); dynamic batching is listed when `--max-batch` is on.
    """
    pb = model_config_pb2()

    platform = {"onnxruntime": "onnxruntime_onnx", "openvino": "openvino"}.get(model.runtime, "pytorch_libtorch")
    config = pb.ModelConfig(name=model.name, platform=platform,
                            max_batch_size=max_request_batch(model.input_shape, max_body_bytes))
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


def _runners(art: Artifact, runtime: str, threads: int | None, instances: int,
             verify: bool) -> list[EngineRunner]:
    """`instances` runners of the artifact's model on `runtime` (`runtimes.build`), loaded once, the first one
    checked by the artifact's own `check` (an ONNX graph audited before any runtime sees it): a runner per
    instance, each used by one request at a time. PyTorch instances each own a copy of the module (one model
    object must not run two requests at once); `threads` there is process-wide, as PyTorch has it."""
    kind = art.kind
    if runtime not in kind.runtimes or (kind.needs_torch and runtime != "torch"):
        via = (" through its verified ONNX export (dirac_deploy.serve_files.served_artifact), or on `runtime='torch'`"
               if kind.needs_torch else "")
        raise DiracDeployError(f"{art.path} is {kind.description}; serve it with "
                               f"{' or '.join(f'`runtime={r!r}`' for r in kind.runtimes if r == 'torch' or not kind.needs_torch)}"
                               f"{via}")
    if verify and isinstance(art, OnnxArtifact):
        audit_artifact(art)  # before the runtime sees the graph (custom ops fail there with less to go on)
    # OpenVINO runs an IR at the precision it records; anything else at the precision of its weights
    precision = art.provenance.precision or (None if kind.key == "openvino-ir" else "fp32")
    try:
        loaded = load(runtime, art.model)
        copies = [loaded] + [copy.deepcopy(loaded) if runtime == "torch" else loaded for _ in range(instances - 1)]
        runners = [build(runtime, m, threads=threads, precision=precision) for m in copies]
    except DiracDeployError:
        raise
    except Exception as e:  # runtimes raise their own types for graphs they cannot load (custom ops, attributes)
        raise DiracDeployError(f"{engine(runtime).label} cannot load {art.path}: {runtime_reason(e)}") from None
    if verify:
        art.check(runners[0])
    return runners

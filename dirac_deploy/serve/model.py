"""A model behind the server: loaded once, validated, run on ONNX Runtime, OpenVINO or PyTorch.

MODEL may be an `.onnx` from `export` or `quantize` (served without torch), an OpenVINO IR `.xml` from
`quantize --target openvino`, a `plain.pth` from `fold`, or any checkpoint `fold` reads (folded and verified
at start). With the onnxruntime or openvino runtime a `.pth` is exported in memory through the same verified
export as `dirac-deploy export` (audit and parity check). OpenVINO runs a model at the precision it records
(an IR from `quantize --precision bf16` asks for bf16), else fp32.
"""

from __future__ import annotations

import copy
import os
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .._optional import available, model_config_pb2
from ..errors import DiracDeployError, MissingDependencyError
from ..fileio import model_file_kind
from ..onnxfile import audit_artifact, check_artifact, read_onnx
from ..runtime import ort_session
from ..spec import INPUT_NAME, OUTPUT_NAME
from .batching import DynamicBatcher
from .instances import InstancePool, Runner

RUNTIMES = ("onnxruntime", "openvino", "torch")
_NAME = re.compile(r"^[A-Za-z0-9_.-]+$")


@dataclass
class ModelSource:
    name: str
    path: Path
    runtime: str | None = None  # None: `default_runtime` of the file


def default_runtime(path: Path) -> str:
    """The runtime a file is served on when none is named: an OpenVINO IR on OpenVINO, anything else (an
    .onnx from export or quantize, a plain.pth, a checkpoint) on ONNX Runtime."""
    return "openvino" if model_file_kind(path) == "openvino-ir" else "onnxruntime"


def _split_runtime(arg: str) -> tuple[str, str | None]:
    head, at, tail = arg.rpartition("@")
    return (head, tail) if at and tail in RUNTIMES else (arg, None)


def parse_model_args(args: list[str], runtime: str | None = None) -> list[ModelSource]:
    """`[NAME=]PATH[@RUNTIME]` or a directory (every .onnx / .xml / .pth / .pt / .pt7 inside) -> named sources.
    A model's runtime: its own `@RUNTIME`, else `runtime` (the --runtime option), else `default_runtime`."""
    sources: list[ModelSource] = []
    for arg in args:
        arg, own = _split_runtime(arg)
        name, sep, path = arg.partition("=")
        if not sep:
            name, path = "", arg
        p = Path(path)
        if p.is_dir() and not name:
            files = sorted(f for f in p.iterdir() if f.suffix in (".onnx", ".xml", ".pth", ".pt", ".pt7") and f.is_file())
            if not files:
                raise DiracDeployError(f"no models in directory {p} (expected .onnx, .xml, .pth, .pt or .pt7 files)")
            sources += [ModelSource(f.name.split(".")[0], f, own or runtime) for f in files]
        else:
            sources.append(ModelSource(name or p.name.split(".")[0], p, own or runtime))
    seen = set()
    for s in sources:
        if not _NAME.match(s.name):
            raise DiracDeployError(f"bad model name {s.name!r}: use letters, digits, '_', '-' and '.' (NAME=PATH sets it)")
        if s.name in seen:
            raise DiracDeployError(f"two models are named {s.name!r}; name them explicitly with NAME=PATH")
        seen.add(s.name)
    return sources


def check_sources(sources: list[ModelSource]) -> list[ModelSource]:
    """Every model's file, kind, runtime and dependencies checked before any model loads; each source gets its
    runtime settled. A failure names the model and the fix.

    Raises:
        DiracDeployError: a missing or unreadable file, a runtime that cannot run that kind of file, or a
            runtime that is not installed.
    """
    checked = []
    for s in sources:
        kind = model_file_kind(s.path)  # missing, empty, unknown content: one line naming the file
        runtime = s.runtime or default_runtime(s.path)
        if runtime not in RUNTIMES:
            raise DiracDeployError(f"{s.name}: unknown runtime {runtime!r}; choose from {', '.join(RUNTIMES)}")
        if kind == "openvino-ir" and runtime != "openvino":
            raise DiracDeployError(f"{s.name}: {s.path} is an OpenVINO IR; serve it on openvino ({s.path}@openvino, "
                                   f"or leave the runtime out: an IR defaults to openvino)")
        if kind == "onnx" and runtime == "torch":
            raise DiracDeployError(f"{s.name}: {s.path} is ONNX; serve it on onnxruntime or openvino "
                                   f"({s.path}@onnxruntime)")
        if runtime == "openvino" and not available("openvino"):
            raise MissingDependencyError(f"{s.name} is to run on OpenVINO, which is not installed: pip install "
                                         f"'dirac-deploy[openvino]'")
        if runtime == "onnxruntime" and not available("onnxruntime"):
            raise MissingDependencyError(f"{s.name} is to run on ONNX Runtime, which is not installed: pip install "
                                         f"'dirac-deploy[export]'")
        if kind == "torch" and not available("torch"):
            raise MissingDependencyError(f"{s.name}: {s.path} is a PyTorch file; serving it needs PyTorch, which is "
                                         f"not installed here (the slim image serves exported .onnx only): export "
                                         f"it with `dirac-deploy export {s.path.name} --onnx {s.path.stem}.onnx` "
                                         f"where torch is installed, or use the full image")
        checked.append(ModelSource(s.name, s.path, runtime))
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


def _ort_runners(model, threads: int | None, instances: int) -> list[Runner]:
    serialized = model.SerializeToString()

    def runner() -> Runner:
        session = ort_session(serialized, threads=threads)
        return lambda x: session.run([OUTPUT_NAME], {INPUT_NAME: x})[0]

    return [runner() for _ in range(instances)]


def _openvino_runners(model, threads: int | None, instances: int, precision: str | None = "f32") -> list[Runner]:
    """One compiled model and infer request per instance (dynamic batch, as the graph has it)."""
    from ..runtime import openvino_compiled, openvino_model

    net = openvino_model(model)

    def runner() -> Runner:
        request = openvino_compiled(net.clone(), threads=threads, precision=precision).create_infer_request()
        return lambda x: np.array(request.infer({0: np.ascontiguousarray(x)})[0])

    return [runner() for _ in range(instances)]


MAX_IR_XML_BYTES = 64 << 20
MAX_IR_LAYERS = 20_000  # as onnxfile.MAX_NODES: a folded chain's IR has a few hundred layers at most


def runtime_reason(e: BaseException) -> str:
    """A runtime's reason, one line: OpenVINO's messages start with a source location ('Exception from
    src/inference/...:84:') and give the reason on a later line; other messages keep their first line."""
    lines = [line.strip() for line in str(e).splitlines() if line.strip()]
    useful = [line for line in lines if not line.startswith(("Exception from", "Check '")) and "src/" not in line]
    return (useful[0] if useful else lines[-1] if lines else type(e).__name__)[:300]


def _check_ir_files(xml: Path) -> None:
    """The .xml and its .bin are regular files of bounded size, and the graph has a bounded layer count, before
    OpenVINO reads either (a FIFO would block it; a huge graph can crash it)."""
    bin_path = xml.with_suffix(".bin")
    for f in (xml, bin_path):
        if f.is_symlink() or not f.is_file():
            raise DiracDeployError(f"{f} is not a regular file; an IR is an .xml and a .bin beside it")
    if xml.stat().st_size > MAX_IR_XML_BYTES:
        raise DiracDeployError(f"{xml} is over {MAX_IR_XML_BYTES >> 20} MiB of XML; not a folded chain's IR")
    layers = xml.read_bytes().count(b"<layer ")
    if layers > MAX_IR_LAYERS:
        raise DiracDeployError(f"{xml} has {layers:,} layers; a folded chain's IR has at most a few hundred "
                               f"(limit {MAX_IR_LAYERS:,})")


def _ir_model(source: ModelSource, runtime: str, threads: int | None, instances: int, max_batch: int,
              verify: bool) -> ServedModel:
    """An OpenVINO IR from `quantize`: its input and classes from the graph, checked against the probe it
    records (there is no ONNX graph to audit; the probe is the check)."""
    from .._optional import require
    from ..onnxfile import LOW_PRECISION_PROBE_RTOL, narrowed_rtol, parse_probe
    from ..proof import compare_logits

    if runtime != "openvino":
        raise DiracDeployError(f"{source.path} is an OpenVINO IR; serve it with --runtime openvino")
    ov = require("openvino")
    _check_ir_files(source.path)
    try:
        net = ov.Core().read_model(str(source.path))
    except Exception as e:  # OpenVINO raises RuntimeError subclasses with multi-line messages
        raise DiracDeployError(f"OpenVINO cannot read {source.path}: {runtime_reason(e)}") from None
    if len(net.inputs) != 1 or len(net.outputs) != 1:
        raise DiracDeployError(f"{source.path}: an IR to serve has one input and one output; this one has "
                               f"{len(net.inputs)} and {len(net.outputs)}")

    def rt(key: str) -> str:
        return net.get_rt_info(["dirac_deploy", key]).astype(str) if net.has_rt_info(["dirac_deploy", key]) else ""

    shape, out = net.inputs[0].get_partial_shape(), net.outputs[0].get_partial_shape()
    if shape.rank.get_length() != 4 or not all(d.is_static for d in list(shape)[1:]) or out.rank.get_length() != 2 \
            or not out[1].is_static:
        raise DiracDeployError(f"{source.path}: expected an input [batch, C, H, W] and logits [batch, classes], got "
                               f"{shape} and {out}")
    input_shape = tuple(d.get_length() for d in list(shape)[1:])
    num_classes = out[1].get_length()
    runners = _openvino_runners(net, threads, instances, precision=None)
    info = {"architecture": rt("architecture") or "OpenVINO IR", "source": "OpenVINO IR",
            "source_sha256": rt("source_sha256"), "precision": rt("precision") or "fp32"}
    if verify:
        probe = parse_probe(rt("parity_probe"), input_shape)
        # the tool's tolerance for an IR (OpenVINO may run it in bf16 or int8); its rt_info may only narrow it
        rtol = narrowed_rtol(LOW_PRECISION_PROBE_RTOL, rt("probe_rtol"))
        if probe is None:
            raise DiracDeployError(f"{source.path} records no readable parity probe (it was not written by "
                                   f"`dirac-deploy quantize`); serve it with --no-verify to skip the check")
        x, ref = probe
        got = runners[0](x)
        proof = compare_logits(ref, got, rtol=rtol, reference_name="logits recorded at quantize")
        if got.shape != ref.shape or not proof.ok:
            raise DiracDeployError(f"{source.path} does not reproduce the logits recorded when it was written: "
                                   f"{proof.describe()}")
        info["verified"] = "parity probe"
    else:
        info["verified"] = "no (--no-verify)"
    return ServedModel(source.name, input_shape, num_classes, runtime, runners, source.path, info, max_batch)


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
    if runtime not in ("onnxruntime", "openvino"):
        raise DiracDeployError(f"{source.path} is ONNX; serve it with --runtime onnxruntime or openvino")
    art = read_onnx(source.path)
    if verify:
        audit_artifact(art)  # before ONNX Runtime sees the graph (custom ops fail there with less to go on)
    engine = "ONNX Runtime" if runtime == "onnxruntime" else "OpenVINO"
    try:
        runners = (_ort_runners(art.model, threads, instances) if runtime == "onnxruntime"
                   else _openvino_runners(art.model, threads, instances))
    except DiracDeployError:
        raise
    except Exception as e:  # runtimes raise their own types for graphs they cannot load (custom ops, attributes)
        raise DiracDeployError(f"{engine} cannot load {source.path}: {runtime_reason(e)}") from None
    info = {"architecture": art.architecture, "source": "ONNX file",
            "source_sha256": art.metadata.get("dirac_deploy.source_sha256", "")}
    if verify:
        probe = art.probe()
        check_artifact(art, session=_RunnerSession(runners[0]) if probe is not None else None, engine=engine)
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


def load_served_model(source: ModelSource, runtime: str | None = None, threads: int | None = None,
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
    runtime = runtime or source.runtime or default_runtime(source.path)
    threads = threads or default_threads(instances)
    if runtime not in RUNTIMES:
        raise DiracDeployError(f"unknown runtime {runtime!r}; choose from {', '.join(RUNTIMES)}")
    kind = model_file_kind(source.path)
    if kind == "onnx":
        return _onnx_model(source, runtime, threads, instances, max_batch, verify)
    if kind == "openvino-ir":
        return _ir_model(source, runtime, threads, instances, max_batch, verify)
    if not available("torch"):
        raise MissingDependencyError(f"{source.path} is a PyTorch file; serving it needs PyTorch, which is not "
                                     f"installed here (the slim image serves exported .onnx only): export it with "
                                     f"`dirac-deploy export {source.path.name} --onnx {source.path.stem}.onnx` where "
                                     f"torch is installed, or use the full image")
    from ..pipeline import load_model  # torch from here on

    loaded = load_model(source.path, options)
    info = {"architecture": loaded.name, "source": loaded.source,
            "source_sha256": loaded.meta.get("source", {}).get("sha256", "")}
    if runtime == "onnxruntime":
        from ..export.from_file import verified_onnx

        runners = _ort_runners(verified_onnx(loaded).model, threads, instances)
    elif runtime == "openvino":
        from ..export.from_file import verified_onnx

        runners = _openvino_runners(verified_onnx(loaded).model, threads, instances)
    else:
        runners = _torch_runners(loaded.plain, threads, instances)
    return ServedModel(source.name, loaded.input_shape, loaded.num_classes, runtime, runners, source.path, info,
                       max_batch)

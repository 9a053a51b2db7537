"""Triton Inference Server model repository, written with Triton's own ModelConfig protobuf.

Layout: `DIR/<name>/config.pbtxt` + `DIR/<name>/1/model.onnx` (platform onnxruntime_onnx). When a TensorRT
engine was built it goes to `DIR/<name>_trt/1/model.plan` with its own config (platform tensorrt_plan):
a Triton model config names exactly one platform, so one directory cannot serve both files.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from .._optional import model_config_pb2
from ..errors import OutputPathError
from ..fileio import Writer
from ..spec import INPUT_NAME, OUTPUT_NAME


@dataclass
class TritonModel:
    name: str
    config_path: Path
    model_path: Path
    platform: str


def model_config(name: str, platform: str, input_shape: tuple[int, int, int], num_classes: int,
                 max_batch_size: int, preferred_batch_sizes: tuple[int, ...] = ()):
    """A `ModelConfig` message: FP32 `input` [C,H,W] -> FP32 `logits` [classes], dynamic batching."""
    pb = model_config_pb2()
    config = pb.ModelConfig(name=name, platform=platform, max_batch_size=max_batch_size)
    config.input.add(name=INPUT_NAME, data_type=pb.TYPE_FP32, dims=list(input_shape))
    config.output.add(name=OUTPUT_NAME, data_type=pb.TYPE_FP32, dims=[num_classes])
    config.dynamic_batching.preferred_batch_size.extend(b for b in preferred_batch_sizes if b <= max_batch_size)
    config.instance_group.add(count=1, kind=pb.ModelInstanceGroup.KIND_AUTO)
    return config


def check_model_name(name: str) -> str:
    if not name or not all(ch.isalnum() or ch in "_-." for ch in name) or name in (".", "..") or len(name) > 200:
        raise OutputPathError(f"bad model name {name!r}: use 1-200 letters, digits, '_', '-' and '.' (`name` sets it)")
    return name


def repo_targets(repo: str | Path, name: str, *, with_plan: bool = False) -> list[tuple[Path, Path]]:
    """(model file, config.pbtxt) per model the repository gets, after checking that they can be written.

    Raises:
        OutputPathError: bad name, a repository path that is a file, a missing parent, or a path in the way.
    """
    repo = Path(repo)
    check_model_name(name)
    if not repo.parent.resolve().is_dir():
        raise OutputPathError(f"cannot create Triton repository {repo}: {repo.parent} does not exist")
    if repo.exists() and not repo.is_dir():
        raise OutputPathError(f"cannot create Triton repository {repo}: it exists and is not a directory")
    names = [(name, "model.onnx")] + ([(f"{name}_trt", "model.plan")] if with_plan else [])
    targets = []
    for model_name, filename in names:
        model_path, config_path = repo / model_name / "1" / filename, repo / model_name / "config.pbtxt"
        for d in (repo / model_name, model_path.parent):
            if d.exists() and not d.is_dir():
                raise OutputPathError(f"cannot write the Triton repository: {d} exists and is a file")
        for f in (model_path, config_path):
            if f.is_dir():
                raise OutputPathError(f"cannot write the Triton repository: {f} exists and is a directory")
        targets.append((model_path, config_path))
    return targets


def repo_files(repo: str | Path, name: str, *, onnx_bytes: bytes, input_shape: tuple[int, int, int],
               num_classes: int, max_batch_size: int = 32, preferred_batch_sizes: tuple[int, ...] = (8,),
               plan_bytes: bytes | None = None) -> tuple[list[TritonModel], dict[Path, Writer]]:
    """The models of a Triton repository and the files to write for them ({path: writer(tmp)}), nothing written.

    Args:
        repo: repository root (created if missing; its parent must exist).
        name: model name (a directory name: letters, digits, '_', '-', '.').
        onnx_bytes: the verified ONNX model.
        input_shape: (channels, height, width), without the batch axis.
        num_classes: width of `logits`.
        max_batch_size: Triton's max_batch_size; dims then exclude the batch axis.
        preferred_batch_sizes: dynamic-batching preferences.
        plan_bytes: a TensorRT engine to add as `<name>_trt`.

    Raises:
        OutputPathError: bad name, a repository path that is a file, or a parent that does not exist.
    """
    from google.protobuf import text_format

    entries = [(name, "onnxruntime_onnx", onnx_bytes, "model.onnx")]
    if plan_bytes is not None:
        entries.append((f"{name}_trt", "tensorrt_plan", plan_bytes, "model.plan"))
    models: list[TritonModel] = []
    writes: dict[Path, Writer] = {}
    targets = repo_targets(repo, name, with_plan=plan_bytes is not None)
    for (model_name, platform, data, _), (model_path, config_path) in zip(entries, targets):
        config = model_config(model_name, platform, input_shape, num_classes, max_batch_size, preferred_batch_sizes)
        text = text_format.MessageToString(config)
        writes[model_path] = (lambda d: lambda tmp: tmp.write_bytes(d))(data)
        writes[config_path] = (lambda t: lambda tmp: tmp.write_text(t))(text)
        models.append(TritonModel(model_name, config_path, model_path, platform))
    return models, writes

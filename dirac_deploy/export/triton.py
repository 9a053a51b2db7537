"""Triton Inference Server model repository, written with Triton's own ModelConfig protobuf.

Layout: `DIR/<name>/config.pbtxt` + `DIR/<name>/1/model.onnx` (platform onnxruntime_onnx). When a TensorRT
engine was built it goes to `DIR/<name>_trt/1/model.plan` with its own config (platform tensorrt_plan):
a Triton model config names exactly one platform, so one directory cannot serve both files.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

from .._optional import require
from ..errors import OutputPathError
from ..fileio import atomic_write


@dataclass
class TritonModel:
    name: str
    config_path: Path
    model_path: Path
    platform: str


def model_config(name: str, platform: str, input_shape: tuple[int, int, int], num_classes: int,
                 max_batch_size: int, preferred_batch_sizes: tuple[int, ...] = ()):
    """A `ModelConfig` message: FP32 `input` [C,H,W] -> FP32 `logits` [classes], dynamic batching."""
    pb = require("tritonclient.grpc.model_config_pb2")
    config = pb.ModelConfig(name=name, platform=platform, max_batch_size=max_batch_size)
    config.input.add(name="input", data_type=pb.TYPE_FP32, dims=list(input_shape))
    config.output.add(name="logits", data_type=pb.TYPE_FP32, dims=[num_classes])
    config.dynamic_batching.preferred_batch_size.extend(b for b in preferred_batch_sizes if b <= max_batch_size)
    config.instance_group.add(count=1, kind=pb.ModelInstanceGroup.KIND_AUTO)
    return config


def _write_model(repo: Path, name: str, platform: str, source: Path, filename: str, config) -> TritonModel:
    from google.protobuf import text_format

    version_dir = repo / name / "1"
    version_dir.mkdir(parents=True, exist_ok=True)
    model_path = atomic_write(version_dir / filename, lambda tmp: shutil.copyfile(source, tmp))
    text = text_format.MessageToString(config)
    config_path = atomic_write(repo / name / "config.pbtxt", lambda tmp: tmp.write_text(text))
    return TritonModel(name, config_path, model_path, platform)


def write_triton_repo(repo: str | Path, name: str, *, onnx_path: str | Path, input_shape: tuple[int, int, int],
                      num_classes: int, max_batch_size: int = 32, preferred_batch_sizes: tuple[int, ...] = (8,),
                      plan_path: str | Path | None = None) -> list[TritonModel]:
    """Write (or update) a Triton model repository for an exported model.

    Args:
        repo: repository root (created if missing; its parent must exist).
        name: model name (a directory name: letters, digits, '_', '-', '.').
        onnx_path: the verified ONNX file.
        input_shape: (channels, height, width), without the batch axis.
        num_classes: width of `logits`.
        max_batch_size: Triton's max_batch_size; dims then exclude the batch axis.
        preferred_batch_sizes: dynamic-batching preferences.
        plan_path: a TensorRT engine to add as `<name>_trt`.
    """
    repo = Path(repo)
    if not name or not all(ch.isalnum() or ch in "_-." for ch in name) or name in (".", ".."):
        raise OutputPathError(f"bad model name {name!r}: use letters, digits, '_', '-' and '.'")
    if not repo.parent.resolve().is_dir():
        raise OutputPathError(f"cannot create Triton repository {repo}: {repo.parent} does not exist")
    if repo.exists() and not repo.is_dir():
        raise OutputPathError(f"cannot create Triton repository {repo}: it exists and is not a directory")
    models = [_write_model(repo, name, "onnxruntime_onnx", Path(onnx_path), "model.onnx",
                           model_config(name, "onnxruntime_onnx", input_shape, num_classes, max_batch_size,
                                        preferred_batch_sizes))]
    if plan_path is not None:
        trt_name = f"{name}_trt"
        models.append(_write_model(repo, trt_name, "tensorrt_plan", Path(plan_path), "model.plan",
                                   model_config(trt_name, "tensorrt_plan", input_shape, num_classes, max_batch_size,
                                                preferred_batch_sizes)))
    return models

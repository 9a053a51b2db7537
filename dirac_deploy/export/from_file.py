"""MODEL file -> ONNX (+ unfolded ONNX, TensorRT engine, Triton repository). The library side of `export`.

MODEL is a `plain.pth` from `fold`, or any checkpoint `fold` reads (folded and verified on the way).
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import onnx

from .._optional import require
from ..checkpoint import LoadOptions
from ..errors import ExportError
from ..fileio import check_output_path
from ..fold.from_checkpoint import plain_from_file
from .fp16 import Fp16Finding, scan_fp16
from .onnx import DEFAULT_OPSET, OnnxExport, export_onnx
from .tensorrt import BatchRange, EngineReport, build_engine
from .triton import TritonModel, write_triton_repo


@dataclass
class ExportReport:
    model: Path
    source: str  # "plain file" or the checkpoint layout folded on the way
    architecture: str
    onnx: OnnxExport
    fp16_findings: list[Fp16Finding] | None = None
    engine: EngineReport | None = None
    triton: list[TritonModel] = field(default_factory=list)


def export_file(model_path: str | Path, onnx_path: str | Path | None, *, unfolded: bool = False,
                trt_path: str | Path | None = None, triton_repo: str | Path | None = None, name: str | None = None,
                opset: int = DEFAULT_OPSET, batch_range: BatchRange = BatchRange(1, 8, 32), workspace_mb: int = 1024,
                fp16: bool = False, options: LoadOptions | None = None) -> ExportReport:
    """Export MODEL to ONNX and, optionally, a TensorRT engine and a Triton repository.

    The unfolded graph (if asked for) is written beside the ONNX as `<stem>.unfolded.onnx`. Optional
    dependencies (TensorRT, tritonclient, onnxconverter-common) are checked before anything is written, so a
    missing one leaves no partial output.
    """
    model_path = Path(model_path)
    if onnx_path is None and triton_repo is None and trt_path is None:
        raise ExportError("nothing to export: give --onnx, --trt and/or --triton-repo")
    outputs = [p for p in (onnx_path, trt_path) if p is not None]
    unfolded_path = None
    if unfolded:
        if onnx_path is None:
            raise ExportError("--unfolded writes beside the --onnx output; give --onnx too")
        unfolded_path = Path(onnx_path).with_suffix(".unfolded.onnx")
        outputs.append(unfolded_path)
    for out in outputs:
        check_output_path(out, model_path)
    if trt_path is not None:  # optional dependencies are checked before anything is computed or written
        require("tensorrt")
    if triton_repo is not None:
        require("tritonclient.grpc.model_config_pb2")
    if fp16 and trt_path is not None:
        require("onnxconverter_common.float16")
    plain, meta, unfolded_model, source = plain_from_file(model_path, options)
    if unfolded and unfolded_model is None:
        what = "already a folded plain file" if source == "plain file" else "an already-folded checkpoint"
        raise ExportError(f"--unfolded needs the unfolded source checkpoint, but {model_path} is {what}; "
                          f"pass the checkpoint it was folded from")
    if not unfolded:
        unfolded_model = None
    channels = plain.layers[0].args["in_channels"]
    size = int(meta.get("input_size", 224))
    input_shape = (channels, size, size)
    check_batches = (1, batch_range.opt if batch_range.opt > 1 else max(batch_range.max, 2))
    with tempfile.TemporaryDirectory(prefix="dirac-deploy-") as tmp:
        target = Path(onnx_path) if onnx_path is not None else Path(tmp) / "model.onnx"
        result = export_onnx(plain, target, input_shape=input_shape, meta=meta, opset=opset,
                             check_batches=check_batches, unfolded_model=unfolded_model, unfolded_path=unfolded_path)
        report = ExportReport(model_path, source, meta.get("architecture", {}).get("name", "plain chain"), result)
        if trt_path is not None:
            engine_source = target
            if fp16:
                from .fp16_onnx import to_fp16

                report.fp16_findings = scan_fp16(plain.state_dict())
                engine_source = Path(tmp) / "model.fp16.onnx"
                onnx.save(to_fp16(result.model), engine_source)
            report.engine = build_engine(engine_source, trt_path, input_shape=input_shape, batch_range=batch_range,
                                         workspace_mb=workspace_mb)
        if triton_repo is not None:
            report.triton = write_triton_repo(
                triton_repo, name or model_path.stem.split(".")[0], onnx_path=target, input_shape=input_shape,
                num_classes=plain.layers[-1].args["out_features"], max_batch_size=batch_range.max,
                preferred_batch_sizes=(batch_range.opt,), plan_path=report.engine.path if report.engine else None)
    return report

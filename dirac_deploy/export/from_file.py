"""MODEL file -> ONNX (+ unfolded ONNX, TensorRT engine, Triton repository). The library side of `export`.

MODEL is a `plain.pth` from `fold`, any checkpoint `fold` reads (folded and verified on the way), or an ONNX
file from `export` (re-audited and re-checked against its parity probe, then repackaged).
Every output is validated before anything is computed, and all outputs are written together or not at all.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import onnx

from .._optional import model_config_pb2, require
from ..checkpoint import LoadOptions
from ..errors import ExportError
from ..fileio import check_not_input, check_output_path, write_with_dirs
from ..pipeline import REPORT_VERSION, LoadedModel, load_model
from .fp16 import Fp16Finding, scan_fp16
from .onnx import DEFAULT_OPSET, MAX_PARITY_BATCH, GraphReport, OnnxExport, export_onnx, verify_artifact
from .tensorrt import BatchRange, EngineReport, build_plan
from .triton import TritonModel, check_model_name, repo_files, repo_targets


@dataclass
class ExportReport:
    model: Path
    source: str  # "plain file", "ONNX file" or the checkpoint layout folded on the way
    architecture: str
    onnx: OnnxExport
    fp16_findings: list[Fp16Finding] | None = None
    engine: EngineReport | None = None
    triton: list[TritonModel] = field(default_factory=list)
    written: list[Path] = field(default_factory=list)

    def to_json(self) -> dict:
        o = self.onnx

        def graph(g):
            return None if g is None else {
                "path": None if g.path is None else str(g.path), "nodes": dict(g.nodes), "node_count": g.node_count,
                "parity": [{**p.to_dict(), "ok": p.ok} for p in g.parity]}

        return {"schema": "dirac-deploy/export", "version": REPORT_VERSION, "model": str(self.model),
                "source": self.source, "architecture": self.architecture, "opset": o.opset,
                "folded": graph(o.folded), "unfolded": graph(o.unfolded), "audit": "passed",
                "metadata": {k: v for k, v in o.metadata.items()},
                "fp16_findings": None if self.fp16_findings is None else [vars(f) for f in self.fp16_findings],
                "tensorrt": None if self.engine is None else {
                    "path": str(self.engine.path), "version": self.engine.tensorrt_version,
                    "bytes": self.engine.size_bytes},
                "triton": [{"name": t.name, "config": str(t.config_path), "model": str(t.model_path),
                            "platform": t.platform} for t in self.triton],
                "written": [str(p) for p in self.written]}


def verified_onnx(loaded: LoadedModel, *, opset: int = DEFAULT_OPSET, check_batches: tuple[int, ...] = (1, 2),
                  unfolded: bool = False) -> OnnxExport:
    """The audited, parity-checked ONNX graph of a loaded model, in memory (for serve and bench)."""
    if loaded.onnx is not None:
        return verify_artifact(loaded.onnx)
    return export_onnx(loaded.plain, None, input_shape=loaded.input_shape, meta=loaded.meta, opset=opset,
                       check_batches=check_batches, unfolded_model=loaded.unfolded if unfolded else None)


def _default_name(model_path: Path) -> str:
    stem = model_path.name.lstrip(".").split(".")[0]
    return stem or "model"


def export_file(model_path: str | Path, onnx_path: str | Path | None, *, unfolded: bool = False,
                trt_path: str | Path | None = None, triton_repo: str | Path | None = None, name: str | None = None,
                opset: int = DEFAULT_OPSET, batch_range: BatchRange = BatchRange(1, 8, 32), workspace_mb: int = 1024,
                fp16: bool = False, options: LoadOptions | None = None,
                progress: Callable[[str], None] = lambda step: None) -> ExportReport:
    """Export MODEL to ONNX and, optionally, a TensorRT engine and a Triton repository.

    The unfolded graph (if asked for) is written beside the ONNX as `<stem>.unfolded.onnx`. Output paths,
    the model name and optional dependencies (TensorRT, tritonclient, onnxconverter-common) are checked before
    anything is computed; every output is written only after all of them were built and verified.

    Raises:
        ExportError: nothing to export, or an option that does not apply (--fp16 without --trt, ...).
        OutputPathError: an output equals the input or cannot be written.
        MissingDependencyError: an optional dependency the options need is not installed.
    """
    model_path = Path(model_path)
    if onnx_path is None and triton_repo is None and trt_path is None:
        raise ExportError("nothing to export: give --onnx, --trt and/or --triton-repo")
    if fp16 and trt_path is None:
        raise ExportError("--fp16 converts the graph TensorRT builds from (TensorRT 11 takes precision from the "
                          "ONNX graph); it needs --trt. For a low-precision ONNX use: dirac-deploy quantize")
    outputs = [Path(p) for p in (onnx_path, trt_path) if p is not None]
    unfolded_path = None
    if unfolded:
        if onnx_path is None:
            raise ExportError("--unfolded writes beside the --onnx output; give --onnx too")
        unfolded_path = Path(onnx_path).with_suffix(".unfolded.onnx")
        outputs.append(unfolded_path)
    if len({p.resolve() for p in outputs}) != len(outputs):
        raise ExportError(f"two outputs name the same file: {', '.join(map(str, outputs))}")
    for out in outputs:
        check_output_path(out, model_path)
    model_name = None
    if triton_repo is not None:
        model_name = check_model_name(name or _default_name(model_path))
        for targets in repo_targets(triton_repo, model_name, with_plan=trt_path is not None):
            for out in targets:
                check_not_input(out, model_path)
                if out.resolve() in {p.resolve() for p in outputs}:
                    raise ExportError(f"the Triton repository would write {out}, which is also another output")
        model_config_pb2()
    for module in ("onnxruntime", "onnxscript", "onnxsim"):  # the export extra, checked before any work
        require(module)
    if trt_path is not None:  # optional dependencies are checked before anything is computed or written
        require("tensorrt")
    if fp16:
        require("onnxconverter_common.float16")
    progress(f"loading {model_path.name} (a checkpoint is folded and verified first)")
    loaded = load_model(model_path, options)
    if unfolded and loaded.unfolded is None:
        what = {"plain file": "already a folded plain file", "onnx": "an ONNX file"}.get(
            loaded.kind, "an already-folded checkpoint")
        raise ExportError(f"--unfolded needs the unfolded source checkpoint, but {model_path} is {what}; "
                          f"pass the checkpoint it was folded from")
    if loaded.onnx is not None:
        progress("auditing the ONNX file and re-running its parity probe")
        result = verify_artifact(loaded.onnx)
    else:
        progress("exporting, checking, simplifying, auditing and running ONNX Runtime parity")
        larger = batch_range.opt if batch_range.opt > 1 else max(min(batch_range.max, 8), 2)
        check_batches = (1, min(larger, MAX_PARITY_BATCH))
        result = export_onnx(loaded.plain, None, input_shape=loaded.input_shape, meta=loaded.meta, opset=opset,
                             check_batches=check_batches, unfolded_model=loaded.unfolded if unfolded else None)
    report = ExportReport(model_path, loaded.source, loaded.name, result)
    onnx_bytes = result.model.SerializeToString()
    writes = {}
    if onnx_path is not None:
        writes[Path(onnx_path)] = lambda tmp: tmp.write_bytes(onnx_bytes)
        result.folded.path = Path(onnx_path)
    if unfolded_path is not None:
        raw = result.unfolded_model.SerializeToString()
        writes[unfolded_path] = lambda tmp: tmp.write_bytes(raw)
        result.unfolded.path = unfolded_path
    plan = None
    if trt_path is not None:
        with tempfile.TemporaryDirectory(prefix="dirac-deploy-") as tmp:
            engine_source = Path(tmp) / "model.onnx"
            engine_model = result.model
            if fp16:
                from .fp16_onnx import to_fp16

                report.fp16_findings = scan_fp16(loaded.plain.state_dict()) if loaded.plain is not None else []
                engine_model = to_fp16(result.model)
            onnx.save(engine_model, engine_source)
            progress("building the TensorRT engine")
            plan, version = build_plan(engine_source, input_shape=loaded.input_shape, batch_range=batch_range,
                                       workspace_mb=workspace_mb)
        writes[Path(trt_path)] = lambda tmp: tmp.write_bytes(plan)
        report.engine = EngineReport(Path(trt_path), version, batch_range, workspace_mb, len(plan))
    if triton_repo is not None:
        report.triton, repo_writes = repo_files(
            triton_repo, model_name, onnx_bytes=onnx_bytes, input_shape=loaded.input_shape,
            num_classes=loaded.num_classes, max_batch_size=batch_range.max, preferred_batch_sizes=(batch_range.opt,),
            plan_bytes=plan)
        writes.update(repo_writes)
    progress("writing")
    report.written = write_with_dirs(writes)
    return report


__all__ = ["ExportReport", "GraphReport", "export_file", "verified_onnx"]

"""MODEL file -> ONNX (+ unfolded ONNX, TensorRT engine, Triton repository). The library side of `export`.

MODEL is a `plain.pth` from `fold`, any checkpoint `fold` reads (folded and verified on the way), or an ONNX
file from `export` (re-audited and re-checked against its parity probe, then repackaged).
Plan, then execute: `plan_export` validates every output and optional dependency before anything is
computed; `execute_export` turns the opened artifact into the outputs, all written together or not at all.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from ..artifacts.onnx import OnnxArtifact
from ..artifacts.plain import PlainArtifact
from ..checkpoint import LoadOptions
from ..errors import ExportError
from ..fileio import Writer, write_with_dirs
from ..opener import open_artifact
from ..pipeline import REPORT_VERSION
from .fp16 import Fp16Finding
from .onnx import DEFAULT_OPSET, MAX_PARITY_BATCH, GraphReport, OnnxExport, export_onnx, verify_artifact
from .targets import TARGETS, ExportContext, check_requirements
from .tensorrt import BatchRange, EngineReport
from .triton import TritonModel, check_model_name


@dataclass
class ExportReport:
    model: Path
    source: str  # "plain file", "ONNX file" or the checkpoint layout folded on the way
    architecture: str
    onnx: OnnxExport
    fp16_findings: list[Fp16Finding] | None = None
    engine: EngineReport | None = None
    triton: list[TritonModel] = field(default_factory=list)
    made: dict[str, dict] = field(default_factory=dict)  # target key -> what it made ("summary": one line)
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
                "targets": {k: {key: v for key, v in d.items() if key != "summary"} for k, d in self.made.items()},
                "written": [str(p) for p in self.written]}


def verified_onnx(art: PlainArtifact | OnnxArtifact, *, opset: int = DEFAULT_OPSET,
                  check_batches: tuple[int, ...] = (1, 2), unfolded: bool = False) -> OnnxExport:
    """The audited, parity-checked ONNX graph of an artifact, in memory: a plain chain exported, an ONNX
    artifact re-audited and re-run against its parity probe."""
    if isinstance(art, OnnxArtifact):
        return verify_artifact(art)
    return export_onnx(art.plain, None, input_shape=art.input_shape, provenance=art.provenance, opset=opset,
                       check_batches=check_batches, unfolded_model=art.unfolded if unfolded else None)


def onnx_artifact(art: PlainArtifact | OnnxArtifact) -> OnnxArtifact:
    """`PlainArtifact -> OnnxArtifact`: the verified export of a chain in memory (an ONNX artifact re-checked)."""
    if isinstance(art, OnnxArtifact):
        verify_artifact(art)
        return art
    return verified_onnx(art).artifact(art.path, art.input_shape, art.num_classes)


def _default_name(model_path: Path) -> str:
    stem = model_path.name.lstrip(".").split(".")[0]
    return stem or "model"


@dataclass(frozen=True)
class ExportPlan:
    """Every output of one export, validated: `outputs` maps an export target (`targets.TARGETS`, in its order)
    to its path; the paths are writable and distinct, none an input, the Triton model name legal, the optional
    dependencies installed."""

    model_path: Path
    outputs: dict[str, Path]
    model_name: str | None
    opset: int
    batch_range: BatchRange
    workspace_mb: int
    fp16: bool
    options: dict[str, dict] = field(default_factory=dict)  # target key -> its own settings ({"pte": {...}})

    @property
    def check_batches(self) -> tuple[int, int]:
        """ONNX Runtime parity at batch 1 and at the engine's optimal batch (or a small one)."""
        br = self.batch_range
        larger = br.opt if br.opt > 1 else max(min(br.max, 8), 2)
        return 1, min(larger, MAX_PARITY_BATCH)


def _outputs(onnx_path, unfolded: bool, trt_path, triton_repo, outputs: dict | None) -> dict[str, Path]:
    """The outputs by target key, in the targets' order: the keyword options, then `outputs` (any target)."""
    given = dict(outputs or {})
    for key, path in (("onnx", onnx_path), ("tensorrt", trt_path), ("triton", triton_repo)):
        if path is not None:
            given[key] = path
    if unfolded:
        if onnx_path is None and "onnx" not in given:
            raise ExportError("`unfolded` writes beside the `onnx` output; give `onnx` too")
        given["unfolded"] = Path(given["onnx"]).with_suffix(".unfolded.onnx")
    unknown = [k for k in given if k not in TARGETS]
    if unknown:
        raise ExportError(f"unknown export target(s) {', '.join(unknown)}; choose from {', '.join(TARGETS)}")
    return {k: Path(given[k]) for k in TARGETS if k in given}


def plan_export(model_path: str | Path, onnx_path: str | Path | None = None, *, unfolded: bool = False,
                trt_path: str | Path | None = None, triton_repo: str | Path | None = None, name: str | None = None,
                opset: int = DEFAULT_OPSET, batch_range: BatchRange = BatchRange(1, 8, 32), workspace_mb: int = 1024,
                fp16: bool = False, outputs: dict[str, str | Path] | None = None,
                target_options: dict[str, dict] | None = None) -> ExportPlan:
    """Validate every output and dependency of an export before anything is computed. Outputs come as the
    keyword options or as `outputs` ({target key: path}, any registered target, `targets.TARGETS`).

    Raises:
        ExportError: no output, --unfolded without --onnx, two outputs naming one file, a Triton output that
            collides with another.
        OutputPathError: an output that is an input or cannot be written.
        MissingDependencyError: the export extra, TensorRT, tritonclient or onnxconverter-common missing.
    """
    model_path = Path(model_path)
    wanted = _outputs(onnx_path, unfolded, trt_path, triton_repo, outputs)
    if not wanted:
        raise ExportError("nothing to export: give `onnx`, `trt`, `triton_repo` and/or `pte` (in Python any "
                          "target as `outputs`, {key: path})")
    if fp16 and "tensorrt" not in wanted:
        raise ExportError("`fp16` converts the graph TensorRT builds from (TensorRT 11 takes precision from the "
                          "ONNX graph); it needs `trt`. For a low-precision ONNX use: dirac-deploy quantize")
    model_name = check_model_name(name or _default_name(model_path)) if "triton" in wanted else None
    plan = ExportPlan(model_path, wanted, model_name, opset, batch_range, workspace_mb, fp16, dict(target_options or {}))
    owner: dict[Path, str] = {}  # every file an output writes -> the output, so no two outputs share one
    for key, path in wanted.items():
        for out in TARGETS[key].plan(plan, path):
            other = owner.setdefault(out.resolve(), key)
            if other != key:
                raise ExportError(f"two outputs name the same file: {out} ({other} and {key})")
    check_requirements(list(wanted), fp16)
    return plan


def export_file(model_path: str | Path, onnx_path: str | Path | None, *, unfolded: bool = False,
                trt_path: str | Path | None = None, triton_repo: str | Path | None = None, name: str | None = None,
                opset: int = DEFAULT_OPSET, batch_range: BatchRange = BatchRange(1, 8, 32), workspace_mb: int = 1024,
                fp16: bool = False, options: LoadOptions | None = None,
                progress: Callable[[str], None] = lambda _step: None,
                outputs: dict[str, str | Path] | None = None,
                target_options: dict[str, dict] | None = None) -> ExportReport:
    """Export MODEL to ONNX and, optionally, a TensorRT engine and a Triton repository (or to any registered
    export target: `outputs`, {target key: path}, `targets.TARGETS`, with `target_options`, {target key:
    settings}, e.g. `outputs={"pte": "m.pte"}, target_options={"pte": {"allow_partial": True}}`).

    The unfolded graph (if asked for) is written beside the ONNX as `<stem>.unfolded.onnx`. Output paths,
    the model name and optional dependencies (TensorRT, tritonclient, onnxconverter-common) are checked before
    anything is computed (`plan_export`); every output is written only after all of them were built and
    verified (`execute_export`).

    Raises:
        ExportError: nothing to export, or an option that does not apply (--fp16 without --trt, ...).
        OutputPathError: an output equals the input or cannot be written.
        MissingDependencyError: an optional dependency the options need is not installed.
    """
    plan = plan_export(model_path, onnx_path, unfolded=unfolded, trt_path=trt_path, triton_repo=triton_repo,
                       name=name, opset=opset, batch_range=batch_range, workspace_mb=workspace_mb, fp16=fp16,
                       outputs=outputs, target_options=target_options)
    progress(f"loading {plan.model_path.name} (a checkpoint is folded and verified first)")
    art = open_artifact(plan.model_path, options)
    if not isinstance(art, (PlainArtifact, OnnxArtifact)):
        raise ExportError(f"{plan.model_path} is {art.kind.description}, already a deployed artifact; export starts "
                          f"from a checkpoint, a plain.pth or an .onnx")
    return execute_export(plan, art, progress)


def execute_export(plan: ExportPlan, art: PlainArtifact | OnnxArtifact,
                   progress: Callable[[str], None] = lambda _step: None) -> ExportReport:
    """Build every output of `plan` from `art` (each target in `targets.TARGETS` order), verify each, then write
    them all together (or none)."""
    unfolded = any(TARGETS[k].needs_unfolded for k in plan.outputs)
    if unfolded and getattr(art, "unfolded", None) is None:
        what = ("an ONNX file" if art.kind.key == "onnx" else "already a folded plain file"
                if getattr(art, "origin", "") == "plain file" else "an already-folded checkpoint")
        raise ExportError(f"`unfolded` needs the unfolded source checkpoint, but {plan.model_path} is {what}; "
                          f"pass the checkpoint it was folded from")
    progress("auditing the ONNX file and re-running its parity probe" if isinstance(art, OnnxArtifact) else
             "exporting, checking, simplifying, auditing and running ONNX Runtime parity")
    result = verified_onnx(art, opset=plan.opset, check_batches=plan.check_batches, unfolded=unfolded)
    report = ExportReport(plan.model_path, art.source, art.name, result)
    ctx = ExportContext(plan, art, result, report, progress)
    writes: dict[Path, Writer] = {}
    for key, path in plan.outputs.items():
        writes.update(TARGETS[key].build(ctx, path))
    progress("writing")
    report.written = write_with_dirs(writes)
    return report


__all__ = ["ExportPlan", "ExportReport", "GraphReport", "execute_export", "export_file", "onnx_artifact",
           "plan_export", "verified_onnx"]

"""What `export` can write: one `{key: ExportTarget}` table that `plan_export` and `execute_export` loop over,
so a new output is one module (its plan and build) and one row (docs/layout.md, "How to add an export target").

A target's `plan(plan, path)` validates its output before anything is computed and returns every file it will
write (so two outputs cannot collide); `build(ctx, path)` returns `{file: writer(tmp)}` from the verified ONNX
graph in `ctx`, and records what it made in `ctx.report`. Targets run in the table's order: the TensorRT
plan is built before the Triton repository, which packages it when present.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .._optional import model_config_pb2, require
from ..fileio import Writer, check_not_input, check_output_path

if TYPE_CHECKING:
    from .from_file import ExportPlan, ExportReport
    from .onnx import OnnxExport



@dataclass
class ExportContext:
    """What every target builds from: the plan, the opened artifact, its verified ONNX graph, the report to fill,
    what earlier targets built (by key), and the progress callback."""

    plan: ExportPlan
    art: Any  # PlainArtifact | OnnxArtifact
    result: OnnxExport
    report: ExportReport
    progress: Callable[[str], None]
    built: dict[str, Any] = field(default_factory=dict)

    @property
    def model(self) -> Any:
        """The verified folded graph (an `onnx.ModelProto`; `verified_onnx` always sets it)."""
        assert self.result.model is not None
        return self.result.model

    @cached_property
    def onnx_bytes(self) -> bytes:
        return self.model.SerializeToString()


@dataclass(frozen=True)
class ExportTarget:
    key: str
    description: str
    plan: Callable[[ExportPlan, Path], list[Path]]
    build: Callable[[ExportContext, Path], dict[Path, Writer]]
    requires: tuple[str, ...] = ()  # modules the target needs (checked by `plan_export`, with install hints)
    needs_unfolded: bool = False  # the export must also produce the unfolded graph


def single_file(plan: ExportPlan, path: Path) -> list[Path]:
    """The plan of a target that writes one file at `path`: writable, not the input."""
    check_output_path(path, plan.model_path)
    return [path]


def _onnx(ctx: ExportContext, path: Path) -> dict[Path, Writer]:
    data = ctx.onnx_bytes
    ctx.result.folded.path = path
    return {path: lambda tmp: tmp.write_bytes(data)}


def _unfolded(ctx: ExportContext, path: Path) -> dict[Path, Writer]:
    assert ctx.result.unfolded_model is not None and ctx.result.unfolded is not None  # asked for: needs_unfolded
    raw = ctx.result.unfolded_model.SerializeToString()
    ctx.result.unfolded.path = path
    return {path: lambda tmp: tmp.write_bytes(raw)}


def _tensorrt(ctx: ExportContext, path: Path) -> dict[Path, Writer]:
    """The TensorRT plan built from the verified graph (converted to fp16 first with --fp16)."""
    import onnx

    from .fp16 import scan_fp16
    from .tensorrt import EngineReport, build_plan

    plan, art = ctx.plan, ctx.art
    with tempfile.TemporaryDirectory(prefix="dirac-deploy-") as tmp:
        engine_source = Path(tmp) / "model.onnx"
        engine_model = ctx.model
        if plan.fp16:
            from .fp16_onnx import to_fp16

            plain = getattr(art, "plain", None)
            ctx.report.fp16_findings = scan_fp16(plain.state_dict()) if plain is not None else []
            engine_model = to_fp16(ctx.model)
        onnx.save(engine_model, engine_source)
        ctx.progress("building the TensorRT engine")
        plan_bytes, version = build_plan(engine_source, input_shape=art.input_shape, batch_range=plan.batch_range,
                                         workspace_mb=plan.workspace_mb)
    ctx.report.engine = EngineReport(path, version, plan.batch_range, plan.workspace_mb, len(plan_bytes))
    ctx.built["tensorrt"] = plan_bytes
    return {path: lambda tmp: tmp.write_bytes(plan_bytes)}


def _plan_triton(plan: ExportPlan, repo: Path) -> list[Path]:
    from .triton import repo_targets

    model_config_pb2()
    files = [f for pair in repo_targets(repo, plan.model_name or "model", with_plan="tensorrt" in plan.outputs)
             for f in pair]
    for f in files:
        check_not_input(f, plan.model_path)
    return files


def _triton(ctx: ExportContext, repo: Path) -> dict[Path, Writer]:
    from .triton import repo_files

    plan, art = ctx.plan, ctx.art
    ctx.report.triton, writes = repo_files(
        repo, plan.model_name or "model", onnx_bytes=ctx.onnx_bytes, input_shape=art.input_shape,
        num_classes=art.num_classes, max_batch_size=plan.batch_range.max,
        preferred_batch_sizes=(plan.batch_range.opt,), plan_bytes=ctx.built.get("tensorrt"))
    return writes


def _program(key: str) -> Callable[[ExportContext, Path], dict[Path, Writer]]:
    """The chain as an edge runtime's program (`export.program.build_program`: fully delegated to XNNPACK unless
    `allow_partial`, loaded and run by the runtime itself against the PyTorch chain)."""
    def build(ctx: ExportContext, path: Path) -> dict[Path, Writer]:
        from ..errors import ExportError
        from .program import LOWERINGS, build_program

        art, label, runtime = ctx.art, LOWERINGS[key].label, LOWERINGS[key].runtime
        if getattr(art, "plain", None) is None:
            raise ExportError(f"{ctx.plan.model_path} is an ONNX graph; a {runtime} program is lowered from the "
                              f"PyTorch chain: give the plain.pth or the checkpoint")
        ctx.progress(f"lowering to {label} and running the program in {runtime}'s runtime")
        built = build_program(key, art.plain, art.input_shape, art.num_classes, art.provenance,
                              allow_partial=bool(ctx.plan.options.get(key, {}).get("allow_partial", False)))
        assert built.parity is not None  # build_program proves it or raises
        left = ", ".join(f"{op} x{n}" for op, n in built.not_delegated.items())
        ctx.report.made[key] = {
            "path": str(path), "bytes": len(built.data), "batch": built.batch, **built.delegation(),
            "parity": built.parity.to_dict(),
            "summary": f"{path} ({len(built.data):,} bytes, batch {built.batch}; XNNPACK runs {built.delegated} ops"
                       + (f", {runtime}'s own kernels {left}" if left else ", all of them") + f"; {runtime} parity "
                       f"{built.parity.max_rel_error:.3g} of max|logit| vs the PyTorch chain)"}
        data = built.data
        return {path: lambda tmp: tmp.write_bytes(data)}
    return build


TARGETS: dict[str, ExportTarget] = {t.key: t for t in (
    ExportTarget("onnx", "the folded chain's verified ONNX graph", single_file, _onnx),
    ExportTarget("unfolded", "the unfolded model's ONNX graph, beside the folded one", single_file, _unfolded,
                 needs_unfolded=True),
    ExportTarget("tensorrt", "a serialized TensorRT engine (11.x)", single_file, _tensorrt, ("tensorrt",)),
    ExportTarget("triton", "a Triton model repository", _plan_triton, _triton),
    ExportTarget("pte", "an ExecuTorch program (XNNPACK, fp32)", single_file, _program("pte"), ("executorch",)),
    ExportTarget("tflite", "a LiteRT program (XNNPACK, fp32)", single_file, _program("tflite"),
                 ("litert_torch", "ai_edge_litert")),
)}


def register(target: ExportTarget) -> None:
    """Add (or replace) an export target: a new output's module does this, or a test with a toy target."""
    TARGETS[target.key] = target


def check_requirements(keys: list[str], fp16: bool) -> None:
    """Every module the asked targets need (MissingDependencyError with the install command)."""
    for module in ("onnxruntime", "onnxscript", "onnxsim"):  # the export extra: every target starts from ONNX
        require(module)
    for key in keys:
        for module in TARGETS[key].requires:
            require(module)
    if fp16:
        require("onnxconverter_common.float16")

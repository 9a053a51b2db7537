"""Open any model file as the artifact of its kind: the one dispatch on file kind.

- a checkpoint (any layout `fold` reads): folded and verified into a `PlainArtifact`;
- a `plain.pth`: rebuilt and checked into a `PlainArtifact`;
- an `.onnx` from `export` or `quantize`: read and contract-checked into an `OnnxArtifact` (no torch);
- an OpenVINO IR `.xml` from `quantize --target openvino`: an `IrArtifact` (needs openvino, no torch).

`inspect_file` answers what a file holds without folding it. Torch is imported only
for the PyTorch kinds, so opening an .onnx or an IR works where PyTorch is not installed.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .artifacts.deployed import read_deployed
from .artifacts.digest import content_row
from .artifacts.ir import IrArtifact, read_ir
from .artifacts.onnx import OnnxArtifact, read_onnx
from .artifacts.program import ProgramArtifact
from .artifacts.provenance import Provenance
from .errors import DiracDeployError
from .fileio import sha256_file
from .kinds import KINDS, ArtifactKind, kind_of
from .load_options import LoadOptions

if TYPE_CHECKING:
    from .artifacts.plain import PlainArtifact
    from .pipeline import FileReport, InspectReport


@dataclass
class ModelFile:
    """A model file read once, not yet folded: its kind and what was read (the artifact of an .onnx or IR,
    the loaded payload of a PyTorch file). `open_artifact` folds from it; what a caller must know before a
    fold (the source checkpoint's digest) it answers without reading the file again."""

    path: Path
    kind: ArtifactKind
    deployed: OnnxArtifact | IrArtifact | ProgramArtifact | None = None
    payload: Any = None  # the PyTorch file as `load_torch_file` returned it

    @cached_property
    def source_sha256(self) -> str:
        """The sha256 of the checkpoint the file comes from: the file's own for a checkpoint, the recorded one
        for a plain.pth, an .onnx or an IR ('' when none is recorded)."""
        from .artifacts.plain import is_plain_file

        if self.deployed is not None:
            return self.deployed.provenance.source_sha256
        if is_plain_file(self.payload):
            try:
                return Provenance.from_plain_meta(self.payload.get("meta", {})).source_sha256
            except DiracDeployError:
                return ""
        return sha256_file(self.path)


def read_model_file(path: str | Path, options: LoadOptions | None = None, *,
                    kind: ArtifactKind | None = None) -> ModelFile:
    """Sniff and read a model file once (`kind`: when the caller has sniffed it already). An .onnx or an IR
    is read and contract-checked into its artifact; a PyTorch file is loaded (`load_torch_file`, safe unless
    `options.trust_checkpoint`) but not folded.

    Raises:
        CheckpointError, UnsafeCheckpointError, DiracDeployError: as `open_artifact`.
    """
    path = Path(path)
    kind = kind or kind_of(path)
    if not kind.needs_torch:
        return ModelFile(path, kind, deployed=read_deployed(path, kind))
    from .checkpoint.reading import load_torch_file

    trust = (options or LoadOptions()).trust_checkpoint
    return ModelFile(path, kind, payload=load_torch_file(path, trust=trust, kind=kind))


def open_artifact(path: str | Path | ModelFile, options: LoadOptions | None = None, *, check_batch: int = 4,
                  measure: bool = False,
                  kind: ArtifactKind | None = None) -> PlainArtifact | OnnxArtifact | IrArtifact | ProgramArtifact:
    """Open a checkpoint (folded and verified), a plain file, an ONNX file or an OpenVINO IR.

    Args:
        path: the file, or the `ModelFile` it was read into (`read_model_file`), which is not read again.
        options: trust, BN eps and metadata overrides for checkpoints; `input_size` for plain files.
        check_batch: seeded images the fold proof runs on (checkpoints only).
        measure: also count FLOPs before and after the fold (one extra forward pass each).
        kind: the file's kind when the caller has sniffed it already (`kinds.kind_of`).

    Raises:
        CheckpointError: unreadable, unsafe, unknown layout or damaged file.
        EquivalenceError: a checkpoint whose fold misses the tolerance.
        DiracDeployError: an IR that OpenVINO cannot read or that breaks the I/O contract.
    """
    options = options or LoadOptions()
    read = path if isinstance(path, ModelFile) else read_model_file(path, options, kind=kind)
    if read.deployed is not None:
        return read.deployed
    return _open_torch_file(read, options, check_batch, measure)


load_model = open_artifact  # its earlier name, kept for code written against it


def _open_torch_file(read: ModelFile, options: LoadOptions, check_batch: int, measure: bool) -> PlainArtifact:
    from .artifacts.plain import is_plain_file, plain_artifact, plain_from_payload
    from .checkpoint import checkpoint_from_object
    from .pipeline import fold_loaded, plain_provenance

    path, obj = read.path, read.payload
    if is_plain_file(obj):
        plain, provenance = plain_from_payload(obj, str(path))
        return plain_artifact(path, plain, provenance, options.input_size)
    # the digest is reused when a caller asked for it already (a cached_property sits in __dict__ once computed)
    loaded = checkpoint_from_object(obj, path, options, sha256=read.__dict__.get("source_sha256"))
    report = fold_loaded(loaded, check_batch=check_batch, measure=measure, ncrelu=options.ncrelu)
    assert report.plain is not None and report.proof is not None  # fold_loaded returns both or raises
    return plain_artifact(path, report.plain, plain_provenance(loaded, report.proof, options.ncrelu),
                          origin="checkpoint", source=f"checkpoint ({report.layout}), folded and verified",
                          unfolded=None if loaded.folded_source else loaded.unfolded, fold=report)


def inspect_file(path: str | Path, options: LoadOptions | None = None) -> InspectReport | FileReport:
    """What any model file holds, without folding a checkpoint: an `InspectReport` for a checkpoint, a
    `FileReport` for a plain.pth (its layers, size and provenance), an .onnx (its ops, the audit and the
    parity probe re-run in ONNX Runtime) or an IR (its shape and recorded provenance)."""
    from .pipeline import FileReport, inspect_checkpoint, layer_histogram

    path = Path(path)
    options = options or LoadOptions()
    kind = kind_of(path).key
    if kind == "onnx":
        from .artifacts.onnx import op_histogram

        graph = read_onnx(path)
        try:
            checked = graph.check()
            checks = [("audit", f"passed: only {graph.graph_kind} chain ops"),
                      ("parity probe", f"passed: {checked.describe()}")]
        except DiracDeployError as e:
            checks = [("audit and parity probe", f"FAILED: {e}")]
        checks.insert(0, content_row(graph.provenance.content_sha256))
        return FileReport(path, "onnx", graph.architecture, graph.input_shape, graph.num_classes, None, None,
                          op_histogram(graph.model), graph.provenance, checks, dict(graph.metadata))
    if kind in ("pte", "tflite"):
        return _inspect_program(path, kind)
    if kind == "openvino-ir":
        ir = read_ir(path)
        return FileReport(path, "openvino-ir", ir.name, ir.input_shape, ir.num_classes, None, None, {},
                          ir.provenance, [content_row(ir.provenance.content_sha256),
                                          ("read", "OpenVINO reads it; one input, one output")])
    from .artifacts.plain import is_plain_file, plain_artifact, plain_from_payload
    from .checkpoint.reading import load_torch_file
    from .summary import count_flops, count_parameters

    obj = load_torch_file(path, trust=options.trust_checkpoint)
    if not is_plain_file(obj):
        return inspect_checkpoint(path, options)
    plain, provenance = plain_from_payload(obj, str(path))
    art = plain_artifact(path, plain, provenance, options.input_size)
    checks = [content_row(provenance.content_sha256),
              ("load", "rebuilt from plain data; tensors finite and matching their layers")]
    proof = provenance.fold_proof or {}
    if "max_rel_error" in proof:
        checks.append(("fold proof (recorded)", f"max |logit error| {proof['max_rel_error']:.3g} of max|logit|, "
                                                f"top-1 agreement {proof.get('top1_agreement', 0):.0%}"))
    return FileReport(path, "plain file", art.name, art.input_shape, art.num_classes, count_parameters(plain),
                      count_flops(plain, art.input_shape[0], art.input_shape[1]), layer_histogram(plain),
                      art.provenance, checks,
                      provenance.to_plain_meta())


def _inspect_program(path: Path, kind: str) -> FileReport:
    """A lowered program (.pte, .tflite): its record (digest checked on read), what XNNPACK runs, and its parity
    probe re-run in its own runtime where that runtime's extra is installed."""
    from ._optional import available, not_installed
    from .artifacts.deployed import read_deployed
    from .pipeline import FileReport
    from .runtimes import engine

    prog = read_deployed(path, KINDS[kind])
    assert isinstance(prog, ProgramArtifact)
    rest = prog.delegation.get("not_delegated") or {}
    checks = [content_row(prog.provenance.content_sha256),
              ("delegation", f"XNNPACK runs {prog.delegation.get('delegated', '?')} ops" + (
                  f", {prog.runtime_name}'s own kernels " + ", ".join(f"{op} x{n}" for op, n in rest.items())
                  if rest else ", all of them"))]
    package = engine(prog.engine).package
    if available(package):
        try:
            checks.append(("parity probe", f"passed: {prog.check().describe()}"))
        except DiracDeployError as e:
            checks.append(("parity probe", f"FAILED: {e}"))
    else:
        checks.append(("parity probe", f"not run: {not_installed(package, prog.runtime_name)}"))
    return FileReport(path, kind, prog.name, prog.input_shape, prog.num_classes, None, None,
                      {"XNNPACK delegated ops": int(prog.delegation.get("delegated", 0)), **rest}, prog.provenance,
                      checks, dict(prog.metadata))

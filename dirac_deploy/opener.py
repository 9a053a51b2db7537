"""Open any model file as the artifact of its kind: the one dispatch on file kind.

- a checkpoint (any layout `fold` reads): folded and verified into a `PlainArtifact`;
- a `plain.pth`: rebuilt and checked into a `PlainArtifact`;
- an `.onnx` from `export` or `quantize`: read and contract-checked into an `OnnxArtifact` (no torch);
- an OpenVINO IR `.xml` from `quantize --target openvino`: an `IrArtifact` (needs openvino, no torch).

`inspect_file` and `source_sha256` answer questions about a file without folding it. Torch is imported only
for the PyTorch kinds, so opening an .onnx or an IR works where PyTorch is not installed.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from .artifacts.deployed import read_deployed
from .artifacts.digest import content_row
from .artifacts.ir import IrArtifact, read_ir
from .artifacts.onnx import OnnxArtifact, read_onnx
from .artifacts.provenance import Provenance
from .errors import DiracDeployError
from .kinds import kind_of
from .load_options import LoadOptions

if TYPE_CHECKING:
    from .artifacts.plain import PlainArtifact
    from .pipeline import FileReport, InspectReport


def open_artifact(path: str | Path, options: LoadOptions | None = None, *, check_batch: int = 4,
                  measure: bool = False) -> PlainArtifact | OnnxArtifact | IrArtifact:
    """Open a checkpoint (folded and verified), a plain file, an ONNX file or an OpenVINO IR.

    Args:
        path: the file.
        options: trust, BN eps and metadata overrides for checkpoints; `input_size` for plain files.
        check_batch: seeded images the fold proof runs on (checkpoints only).
        measure: also count FLOPs before and after the fold (one extra forward pass each).

    Raises:
        CheckpointError: unreadable, unsafe, unknown layout or damaged file.
        EquivalenceError: a checkpoint whose fold misses the tolerance.
        DiracDeployError: an IR that OpenVINO cannot read or that breaks the I/O contract.
    """
    path = Path(path)
    if not kind_of(path).needs_torch:
        return read_deployed(path)
    return _open_torch_file(path, options or LoadOptions(), check_batch, measure)


load_model = open_artifact  # its earlier name, kept for code written against it


def _open_torch_file(path: Path, options: LoadOptions, check_batch: int, measure: bool) -> PlainArtifact:
    from .artifacts.plain import is_plain_file, plain_artifact, plain_from_payload
    from .checkpoint import checkpoint_from_object
    from .checkpoint.reading import load_torch_file
    from .pipeline import fold_loaded, plain_provenance

    obj = load_torch_file(path, trust=options.trust_checkpoint)
    if is_plain_file(obj):
        plain, provenance = plain_from_payload(obj, str(path))
        return plain_artifact(path, plain, provenance, options.input_size)
    loaded = checkpoint_from_object(obj, path, options)
    report = fold_loaded(loaded, check_batch=check_batch, measure=measure, ncrelu=options.ncrelu)
    assert report.plain is not None and report.proof is not None  # fold_loaded returns both or raises
    return plain_artifact(path, report.plain, plain_provenance(loaded, report.proof, options.ncrelu),
                          kind="checkpoint", source=f"checkpoint ({report.layout}), folded and verified",
                          unfolded=None if loaded.folded_source else loaded.model, fold=report)


def source_sha256(path: str | Path, options: LoadOptions | None = None) -> str:
    """The sha256 of the checkpoint a model file comes from, without folding anything: the file's own for a
    checkpoint, the recorded one for a plain.pth, an .onnx or an IR ('' when none is recorded)."""
    from .fileio import sha256_file

    path = Path(path)
    options = options or LoadOptions()
    kind = kind_of(path).key
    if kind == "onnx":  # its metadata only: the full read and checks come with open_artifact
        import onnx

        try:
            props = onnx.load(str(path), load_external_data=False).metadata_props
        except Exception:  # protobuf errors share no base class; open_artifact reports the file properly
            return ""
        return Provenance.from_onnx_metadata({p.key: p.value for p in props}).source_sha256
    if kind == "openvino-ir":
        try:
            return read_ir(path).provenance.source_sha256
        except DiracDeployError:
            return ""
    from .artifacts.plain import is_plain_file
    from .checkpoint.reading import load_torch_file

    obj = load_torch_file(path, trust=options.trust_checkpoint)
    if is_plain_file(obj):
        try:
            return Provenance.from_plain_meta(obj.get("meta", {})).source_sha256
        except DiracDeployError:
            return ""
    return sha256_file(path)


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

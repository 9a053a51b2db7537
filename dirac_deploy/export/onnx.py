"""Plain chain -> one self-contained, audited, parity-checked ONNX file.

Pipeline: dynamo `torch.onnx.export` (dynamic batch axis, input `input`, output `logits`) -> onnx.checker
(full check) -> strict shape inference -> onnxsim -> graph audit (only chain ops) -> ONNX Runtime vs PyTorch
at batch 1 and a larger batch -> metadata_props -> atomic write. Any failure raises and writes nothing.

`--unfolded` exports the model as trained with the exporter's optimizer off, so the Dirac parameterization
and BatchNormalization stay visible; it is parity-checked but, by design, not audited.
"""

from __future__ import annotations

import contextlib
import io
import logging
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import onnx
import torch

from .. import runtimes
from .._optional import require
from ..artifacts.digest import stamp_onnx
from ..artifacts.onnx import (
    OnnxArtifact,
    allowed_ops,
    audit_violations,
    check_artifact,
    op_histogram,
    probe_inputs,
    probe_record,
)
from ..artifacts.provenance import Provenance
from ..errors import EquivalenceError, ExportError, first_line
from ..fileio import write_all
from ..folding.verify import DEFAULT_RTOL, Proof, compare_logits, seeded_inputs
from ..spec import INPUT_NAME, OUTPUT_NAME
from . import DEFAULT_OPSET, MAX_PARITY_BATCH, MIN_OPSET

__all__ = ["DEFAULT_OPSET", "MAX_PARITY_BATCH", "MIN_OPSET", "export_onnx", "verify_artifact"]


@dataclass
class GraphReport:
    """One exported graph: where it went, what it holds, and its ONNX Runtime parity at each checked batch."""

    path: Path | None
    nodes: dict[str, int]
    parity: list[Proof] = field(default_factory=list)

    @property
    def node_count(self) -> int:
        return sum(self.nodes.values())


@dataclass
class OnnxExport:
    folded: GraphReport
    opset: int
    metadata: dict[str, str]
    unfolded: GraphReport | None = None
    model: onnx.ModelProto | None = field(default=None, repr=False)
    unfolded_model: onnx.ModelProto | None = field(default=None, repr=False)

    def artifact(self, path: Path, input_shape: tuple[int, int, int], num_classes: int) -> OnnxArtifact:
        """The verified folded graph as an in-memory `OnnxArtifact` (`path`: the file it was made from)."""
        assert self.model is not None, "a verified export always holds its folded graph"
        c, h, w = input_shape
        return OnnxArtifact(Path(path), self.model, (c, h, w), num_classes,
                            {p.key: p.value for p in self.model.metadata_props})


@contextlib.contextmanager
def _quiet_exporter():
    # The exporter logs one warning per missing torchvision op and prints progress; neither concerns users.
    loggers = [logging.getLogger(n) for n in ("torch.onnx", "torch.export", "torch._export", "onnxscript")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            yield
    finally:
        for lg, level in zip(loggers, levels):
            lg.setLevel(level)


def to_onnx_proto(model: torch.nn.Module, example: torch.Tensor, *, opset: int, optimize: bool) -> onnx.ModelProto:
    """Dynamo export with a dynamic batch axis; returns the in-memory ModelProto (no external data)."""
    if opset < MIN_OPSET:
        raise ExportError(f"opset {opset} is too low: the torch.onnx (dynamo) exporter produces opset >= {MIN_OPSET}; "
                          f"use `opset={MIN_OPSET}` or higher")
    require("onnxscript")  # the exporter's own ImportError would surface as an export failure
    try:
        with _quiet_exporter():
            program = torch.onnx.export(model, (example,), dynamo=True, input_names=[INPUT_NAME],
                                        output_names=[OUTPUT_NAME], opset_version=opset,
                                        dynamic_shapes=({0: "batch"},), optimize=optimize, verbose=False)
    except Exception as e:  # the exporter raises many types; all mean "could not export"
        first = first_line(e)
        raise ExportError(f"torch.onnx.export failed: {first[:300]}") from None
    if program is None:  # the exporter returns None only when asked to write a file itself
        raise ExportError("torch.onnx.export returned no program")
    model = program.model_proto
    written = max((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), default=None)
    if written != opset:  # the exporter falls back silently for opsets it does not implement
        raise ExportError(f"opset {opset} is not supported by this torch.onnx exporter (it wrote opset {written}); "
                          f"choose one it implements, e.g. `opset={DEFAULT_OPSET}`")
    return model


def check_graph(model: onnx.ModelProto) -> onnx.ModelProto:
    """onnx.checker (full check) and strict, type-checked shape inference; returns the inferred model."""
    try:
        onnx.checker.check_model(model, full_check=True)
        return onnx.shape_inference.infer_shapes(model, check_type=True, strict_mode=True)
    except (onnx.checker.ValidationError, onnx.shape_inference.InferenceError) as e:
        raise ExportError(f"exported graph is invalid: {str(e).strip().splitlines()[0]}") from None


def simplify(model: onnx.ModelProto) -> onnx.ModelProto:
    """onnxsim: constant folding and graph cleanup to a fixed point."""
    onnxsim = require("onnxsim")

    with _quiet_exporter():
        simplified, ok = onnxsim.simplify(model)
    if not ok:
        raise ExportError("onnxsim could not validate the simplified graph")
    return simplified


@torch.no_grad()
def ort_parity(model: onnx.ModelProto, reference: torch.nn.Module, input_shape: tuple[int, int, int],
               batches: tuple[int, ...], *, rtol: float = DEFAULT_RTOL, seed: int = 0) -> list[Proof]:
    """ONNX Runtime (CPU) output vs the PyTorch module, one Proof per batch size."""
    runner = runtimes.build("onnxruntime", model)
    proofs = []
    for b in batches:
        x = seeded_inputs(b, input_shape[0], input_shape[1], seed + b)
        got = runner.run(x.numpy())
        proofs.append(compare_logits(reference(x), got, rtol=rtol, input_shape=tuple(x.shape),
                                     reference_name="PyTorch model"))
    return proofs


def _raise_on_parity(proofs: list[Proof], what: str) -> None:
    bad = [p for p in proofs if not p.ok]
    if bad:
        detail = "; ".join(f"output '{OUTPUT_NAME}' at batch {p.batch}: {p.describe()}" for p in bad)
        raise EquivalenceError(f"{what} does not match PyTorch in ONNX Runtime: {detail}")


def _set_metadata(model: onnx.ModelProto, props: dict[str, str]) -> None:
    """The provenance and probe, then the content digest over all of it (`artifacts.digest`)."""
    del model.metadata_props[:]
    for k, v in props.items():
        model.metadata_props.add(key=k, value=v)
    model.producer_name = "dirac-deploy"
    stamp_onnx(model)


def _writer(model: onnx.ModelProto):
    data = model.SerializeToString()
    return lambda tmp: tmp.write_bytes(data)


@torch.no_grad()
def parity_probe(model: onnx.ModelProto, reference: torch.nn.Module, input_shape: tuple[int, int, int], *,
                 rtol: float = DEFAULT_RTOL, batch: int = 2, seed: int = 0) -> tuple[str, Proof]:
    """The reference's logits on numpy-seeded probe inputs (stored in the file so a loader without torch can
    re-check the graph, `artifacts.onnx.OnnxArtifact.probe`) and ONNX Runtime's agreement with them now."""
    x = probe_inputs(batch, input_shape, seed)
    ref = reference(torch.from_numpy(x)).numpy()
    got = runtimes.build("onnxruntime", model).run(x)
    proof = compare_logits(ref, got, rtol=rtol, input_shape=tuple(x.shape), reference_name="PyTorch model")
    return probe_record(ref, seed), proof


def export_onnx(plain: torch.nn.Module, path: str | Path | None, *, input_shape: tuple[int, int, int],
                provenance: Provenance | dict | None = None, opset: int = DEFAULT_OPSET, check_batches: tuple[int, ...] = (1, 8),
                rtol: float = DEFAULT_RTOL, unfolded_model: torch.nn.Module | None = None,
                unfolded_path: str | Path | None = None) -> OnnxExport:
    """Export a folded chain to ONNX, prove it, and write it.

    Args:
        plain: the folded model (eval mode).
        path: output `.onnx` (None: build and verify only).
        input_shape: (channels, height, width) of one image.
        provenance: where the chain came from (or a plain file's `meta`), recorded as metadata_props.
        opset: ONNX opset (>= 18).
        check_batches: batch sizes of the ONNX Runtime parity check.
        rtol: parity tolerance on max|error| / max|logit|, with identical top-1.
        unfolded_model / unfolded_path: also export the model as trained (not simplified, not audited).

    Raises:
        ExportError: export, checker, shape inference or the audit failed (names the offending nodes).
        EquivalenceError: ONNX Runtime output differs from PyTorch beyond tolerance.
    """
    example = seeded_inputs(2, *input_shape[:2])
    model = simplify(check_graph(to_onnx_proto(plain.eval(), example, opset=opset, optimize=True)))
    kinds = {layer.kind for layer in getattr(plain, "layers", [])}
    violations = audit_violations(model, allowed_ops(kinds))
    if violations:
        raise ExportError(f"folded graph failed the audit: {len(violations)} node(s) outside the plain chain: "
                          f"{', '.join(violations[:8])}{' ...' if len(violations) > 8 else ''}")
    proofs = ort_parity(model, plain, input_shape, check_batches, rtol=rtol)
    probe, probe_proof = parity_probe(model, plain, input_shape, rtol=rtol)
    _raise_on_parity([*proofs, probe_proof], "the folded ONNX graph")
    if isinstance(provenance, dict):
        provenance = Provenance.from_plain_meta(provenance)
    provenance = (provenance or Provenance()).replace(graph="folded")
    props = provenance.to_onnx_metadata()
    _set_metadata(model, provenance.to_onnx_metadata(probe=probe))
    report = OnnxExport(GraphReport(None, op_histogram(model), proofs), opset, props, model=model)

    if unfolded_model is not None:
        raw = check_graph(to_onnx_proto(unfolded_model.eval(), example, opset=opset, optimize=False))
        raw_proofs = ort_parity(raw, unfolded_model, input_shape, check_batches, rtol=rtol)
        _raise_on_parity(raw_proofs, "the unfolded ONNX graph")
        _set_metadata(raw, provenance.replace(graph="unfolded (as trained)").to_onnx_metadata())
        report.unfolded = GraphReport(None, op_histogram(raw), raw_proofs)
        report.unfolded_model = raw
    # Write only after everything passed, all files or none.
    writes = {}
    if path is not None:
        writes[Path(path)] = _writer(model)
    if report.unfolded is not None and unfolded_path is not None:
        writes[Path(unfolded_path)] = _writer(raw)
    write_all(writes)
    if path is not None:
        report.folded.path = Path(path)
    if report.unfolded is not None and unfolded_path is not None:
        report.unfolded.path = Path(unfolded_path)
    return report


def verify_artifact(art: OnnxArtifact, *, rtol: float = DEFAULT_RTOL) -> OnnxExport:
    """An ONNX file from `export`, re-audited and re-run against its parity probe (`artifacts.onnx.check_artifact`)."""
    proof = check_artifact(art, rtol=rtol)
    opset = max((o.version for o in art.model.opset_import if o.domain in ("", "ai.onnx")), default=0)
    return OnnxExport(GraphReport(art.path, op_histogram(art.model), [proof]), opset, dict(art.metadata),
                      model=art.model)

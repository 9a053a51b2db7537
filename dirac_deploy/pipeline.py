"""Checkpoint -> verified plain chain: `fold_checkpoint` and `inspect_checkpoint` (the library side of
`dirac-deploy fold` and `inspect`), `fold_loaded` for a checkpoint already read, and the reports they return.

Opening any model file (a checkpoint is folded here on the way) is `opener.open_artifact`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch

from .artifacts.plain import save_plain
from .artifacts.provenance import Provenance
from .checkpoint import LoadedCheckpoint, LoadOptions, checkpoint_from_object
from .checkpoint.reading import load_torch_file
from .errors import EquivalenceError
from .fileio import check_output_path
from .folding.chain import canonicalize, folded_source_ops, name_activations, to_plain
from .folding.fold import fold
from .folding.verify import DEFAULT_RTOL, Proof, compare, seeded_inputs
from .models.plain import PlainNet
from .spec import DiracNetSpec, ScaledIdentitySpec
from .summary import count_flops, count_parameters

REPORT_VERSION = 1  # of the --json reports (docs/reports.md)


@dataclass
class InspectReport:
    """What a checkpoint holds (`inspect CHECKPOINT`)."""

    path: Path
    sha256: str
    layout: str
    layout_description: str
    spec: DiracNetSpec | ScaledIdentitySpec
    parameters: int
    flops: int | None
    folded_source: bool
    notes: list[str] = field(default_factory=list)
    provenance: dict[str, str] = field(default_factory=dict)

    def to_json(self) -> dict:
        return {"schema": "dirac-deploy/inspect", "version": REPORT_VERSION, "kind": "checkpoint",
                **self._common()}

    def _common(self) -> dict:
        spec = self.spec
        return {"path": str(self.path), "sha256": self.sha256, "layout": self.layout,
                "folded_source": self.folded_source,
                "architecture": {"name": spec.name, **spec.to_dict()},
                "input": {"shape": [spec.in_channels, spec.input_size, spec.input_size], "mean": list(spec.mean),
                          "std": list(spec.std), "provenance": dict(self.provenance)},
                "parameters": self.parameters, "flops": self.flops, "notes": list(self.notes)}


@dataclass
class FoldReport(InspectReport):
    """A fold and its proof (`fold`)."""

    parameters_after: int = 0
    flops_after: int | None = None
    proof: Proof | None = None
    output: Path | None = None
    plain: PlainNet | None = None

    def to_json(self) -> dict:
        return {"schema": "dirac-deploy/fold", "version": REPORT_VERSION, **self._common(),
                "parameters_after": self.parameters_after, "flops_after": self.flops_after,
                "proof": None if self.proof is None else {**self.proof.to_dict(), "ok": self.proof.ok},
                "output": None if self.output is None else str(self.output),
                "layers": None if self.plain is None else layer_histogram(self.plain)}


def layer_histogram(plain: PlainNet) -> dict[str, int]:
    """How many layers of each kind the chain has (the reports' `layers`)."""
    counts: dict[str, int] = {}
    for layer in plain.layers:
        counts[layer.kind] = counts.get(layer.kind, 0) + 1
    return counts


@dataclass
class FileReport:
    """What a plain.pth, an exported .onnx, an IR or an ExecuTorch program holds (`inspect FILE`), with the
    checks run on it."""

    path: Path
    kind: str  # "plain file", "onnx", "openvino-ir" or "pte"
    name: str
    input_shape: tuple[int, int, int]
    num_classes: int
    parameters: int | None
    flops: int | None
    ops: dict[str, int]  # layer kinds (plain) or ONNX op types
    provenance: Provenance
    checks: list[tuple[str, str]] = field(default_factory=list)  # (what was checked, the result)
    metadata: dict = field(default_factory=dict)  # the file's own metadata, as stored (for --json)

    @property
    def ok(self) -> bool:
        """False when a check run on the file failed (`inspect` then exits 1)."""
        return not any(result.startswith("FAILED") for _, result in self.checks)

    def to_json(self) -> dict:
        p = self.provenance
        return {"schema": "dirac-deploy/inspect", "version": REPORT_VERSION, "kind": self.kind,
                "path": str(self.path), "architecture": {"name": self.name}, "input": {
                    "shape": list(self.input_shape), "mean": None if p.mean is None else list(p.mean),
                    "std": None if p.std is None else list(p.std), "provenance": dict(p.origins)},
                "num_classes": self.num_classes, "parameters": self.parameters, "flops": self.flops,
                "ops": dict(self.ops), "checks": [{"check": c, "result": r} for c, r in self.checks],
                "ok": self.ok, "meta": self.metadata}


def _flops(model, spec, measure: bool) -> int | None:
    # FLOPs take a full forward pass at the model's input size; callers that only need the chain skip it.
    return count_flops(model, spec.in_channels, spec.input_size) if measure else None


def _inspect(loaded: LoadedCheckpoint, measure: bool = True) -> dict:
    spec = loaded.spec
    source_model = loaded.model
    if loaded.folded_source:  # count the source's own tensors (in its own form), not the transcription's copy
        ops = folded_source_ops(*loaded.folded(), f"{loaded.layout} checkpoint")
        source_model = to_plain(name_activations(ops))
    return dict(path=loaded.path, sha256=loaded.sha256, layout=loaded.layout,
                layout_description=loaded.layout_description, spec=spec, folded_source=loaded.folded_source,
                parameters=count_parameters(source_model), flops=_flops(source_model, spec, measure),
                notes=list(loaded.notes), provenance=dict(loaded.provenance))


def _folded_chain(loaded: LoadedCheckpoint, ncrelu: str) -> PlainNet:
    """The plain chain of an already-folded source: its tensors (shapes checked against the spec), then the same
    exact rewrites as any fold (`folding.chain.canonicalize`)."""
    return to_plain(canonicalize(folded_source_ops(*loaded.folded(), f"{loaded.layout} checkpoint"), ncrelu))


def plain_provenance(loaded: LoadedCheckpoint, proof: Proof, ncrelu: str = "keep") -> Provenance:
    """The provenance of a folded chain: source hash, layout, architecture, fold proof and form, input spec."""
    from . import __version__

    spec = loaded.spec
    return Provenance(source_file=loaded.path.name, source_sha256=loaded.sha256, layout=loaded.layout,
                      architecture=spec.name, spec=spec.to_dict(), input_size=spec.input_size,
                      in_channels=spec.in_channels, num_classes=spec.num_classes, mean=tuple(spec.mean),
                      std=tuple(spec.std), origins=dict(loaded.provenance), fold_proof=proof.to_dict(),
                      fold_form=ncrelu if getattr(spec, "version", 2) == 1 else None, graph="folded",
                      tool_version=__version__, torch_version=str(torch.__version__))


def fold_loaded(loaded: LoadedCheckpoint, *, check_batch: int = 4, seed: int = 0,
                rtol: float = DEFAULT_RTOL, measure: bool = True, ncrelu: str = "keep") -> FoldReport:
    """Fold and verify an already-loaded checkpoint (see `fold_checkpoint`); writes nothing.

    `measure=False` skips the FLOP counts (two extra forward passes); they are then None. `ncrelu` is the v1
    fold form ("keep" or "absorb", `LoadOptions.ncrelu`).
    """
    info = _inspect(loaded, measure)
    spec = loaded.spec
    if loaded.folded_source:
        plain = _folded_chain(loaded, ncrelu)
        inputs = seeded_inputs(check_batch, spec.in_channels, spec.input_size, seed)
        proof = compare(loaded.model, plain, inputs, rtol=rtol, reference_name="source's own folded forward")
        if not proof.ok:
            raise EquivalenceError(f"remapped {spec.name} does not reproduce the source: {proof.describe()}")
    else:
        result = fold(loaded.unfolded, check_batch=check_batch, seed=seed, rtol=rtol, ncrelu=ncrelu)
        plain, proof = result.plain, result.proof
        info["notes"] = info["notes"] + result.notes
    return FoldReport(**info, parameters_after=count_parameters(plain),
                      flops_after=_flops(plain, spec, measure), proof=proof, plain=plain)


def inspect_checkpoint(path: str | Path, options: LoadOptions | None = None) -> InspectReport:
    """What a checkpoint holds (layout, architecture, size), without folding it."""
    options = options or LoadOptions()
    obj = load_torch_file(path, trust=options.trust_checkpoint)
    return InspectReport(**_inspect(checkpoint_from_object(obj, path, options)))


def fold_checkpoint(path: str | Path, output: str | Path | None = None, options: LoadOptions | None = None, *,
                    check_batch: int = 4, seed: int = 0, rtol: float = DEFAULT_RTOL) -> FoldReport:
    """Load any supported checkpoint, fold it, verify it and (if `output` is given) write `plain.pth`.

    Nothing is written unless the proof passes. For an already-folded source the proof compares the remapped
    chain against a literal transcription of the source's own forward.

    Raises:
        CheckpointError: the checkpoint cannot be read or understood.
        EquivalenceError: the folded chain misses the tolerance (nothing written).
        OutputPathError: `output` is the input or cannot be written.
    """
    if output is not None:
        check_output_path(output, path)
    options = options or LoadOptions()
    loaded = checkpoint_from_object(load_torch_file(path, trust=options.trust_checkpoint), path, options)
    report = fold_loaded(loaded, check_batch=check_batch, seed=seed, rtol=rtol, ncrelu=options.ncrelu)
    if output is not None:
        assert report.plain is not None and report.proof is not None  # fold_loaded returns both or raises
        report.output = save_plain(output, report.plain, plain_provenance(loaded, report.proof, options.ncrelu))
    return report

"""Checkpoint file -> verified plain chain (-> plain.pth). The library side of `dirac-deploy fold` and `inspect`."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch

from ..checkpoint import LoadedCheckpoint, LoadOptions, checkpoint_from_object, load_checkpoint
from ..checkpoint.reading import load_torch_file
from ..errors import EquivalenceError
from ..fileio import check_output_path
from ..models.plain import PlainNet
from ..plainfile import is_plain_file, plain_from_payload, save_plain
from ..spec import DiracNetSpec
from ..summary import count_flops, count_parameters
from .fold import fold
from .verify import DEFAULT_RTOL, Proof, compare, seeded_inputs


@dataclass
class InspectReport:
    path: Path
    sha256: str
    layout: str
    layout_description: str
    spec: DiracNetSpec
    parameters: int
    flops: int | None
    folded_source: bool
    notes: list[str] = field(default_factory=list)


@dataclass
class FoldReport(InspectReport):
    parameters_after: int = 0
    flops_after: int | None = None
    proof: Proof | None = None
    output: Path | None = None
    plain: PlainNet | None = None


def _flops(model, spec, measure: bool) -> int | None:
    # FLOPs take a full forward pass at the model's input size; callers that only need the chain skip it.
    return count_flops(model, spec.in_channels, spec.input_size) if measure else None


def _inspect(loaded: LoadedCheckpoint, measure: bool = True) -> dict:
    spec = loaded.spec
    source_model = loaded.plain if loaded.folded_source else loaded.model
    return dict(path=loaded.path, sha256=loaded.sha256, layout=loaded.layout,
                layout_description=loaded.layout_description, spec=spec, folded_source=loaded.folded_source,
                parameters=count_parameters(source_model), flops=_flops(source_model, spec, measure),
                notes=list(loaded.notes))


def inspect_checkpoint(path: str | Path, options: LoadOptions | None = None) -> InspectReport:
    """What a checkpoint holds (layout, architecture, size), without folding it."""
    return InspectReport(**_inspect(load_checkpoint(path, options)))


def plain_meta(loaded: LoadedCheckpoint, proof: Proof) -> dict:
    """Provenance stored with a folded chain: source hash, layout, architecture, fold proof, input spec."""
    from .. import __version__

    spec = loaded.spec
    return {"source": {"file": loaded.path.name, "sha256": loaded.sha256}, "layout": loaded.layout,
            "architecture": {"name": spec.name, **spec.to_dict()}, "fold_proof": proof.to_dict(),
            "input_size": spec.input_size, "in_channels": spec.in_channels, "num_classes": spec.num_classes,
            "mean": list(spec.mean), "std": list(spec.std),
            "dirac_deploy_version": __version__, "torch_version": str(torch.__version__)}


def fold_loaded(loaded: LoadedCheckpoint, *, check_batch: int = 4, seed: int = 0,
                rtol: float = DEFAULT_RTOL, measure: bool = True) -> FoldReport:
    """Fold and verify an already-loaded checkpoint (see `fold_checkpoint`); writes nothing.

    `measure=False` skips the FLOP counts (two extra forward passes); they are then None.
    """
    info = _inspect(loaded, measure)
    spec = loaded.spec
    if loaded.folded_source:
        plain = loaded.plain
        inputs = seeded_inputs(check_batch, spec.in_channels, spec.input_size, seed)
        proof = compare(loaded.model, plain, inputs, rtol=rtol, reference_name="source's own folded forward")
        if not proof.ok:
            raise EquivalenceError(f"remapped {spec.name} does not reproduce the source: {proof.describe()}")
    else:
        result = fold(loaded.model, check_batch=check_batch, seed=seed, rtol=rtol)
        plain, proof = result.plain, result.proof
        info["notes"] = info["notes"] + result.notes
    return FoldReport(**info, parameters_after=count_parameters(plain),
                      flops_after=_flops(plain, spec, measure), proof=proof, plain=plain)


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
    loaded = load_checkpoint(path, options)
    report = fold_loaded(loaded, check_batch=check_batch, seed=seed, rtol=rtol)
    if output is not None:
        report.output = save_plain(output, report.plain, plain_meta(loaded, report.proof))
    return report


def plain_from_file(path: str | Path, options: LoadOptions | None = None):
    """(plain, meta, unfolded model or None, source description) for a plain file or any checkpoint.

    The unfolded model is returned when the source has one (a checkpoint of an unfolded layout).
    """
    options = options or LoadOptions()
    obj = load_torch_file(path, trust=options.trust_checkpoint)
    if is_plain_file(obj):
        plain, meta = plain_from_payload(obj, str(path))
        return plain, meta, None, "plain file"
    loaded = checkpoint_from_object(obj, path, options)
    report = fold_loaded(loaded, measure=False)
    unfolded = None if loaded.folded_source else loaded.model
    return report.plain, plain_meta(loaded, report.proof), unfolded, f"checkpoint ({report.layout}), folded and verified"

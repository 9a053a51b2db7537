"""Open any model file: a checkpoint (folded and verified on the way), a `plain.pth`, or an exported `.onnx`.

`load_model(path)` is the hub every stage uses (export, bench, serve, inspect, the CLI). It returns a
`LoadedModel`: the verified plain chain, its input shape, class count, name, provenance metadata, and the
unfolded model when the source has one. `fold_checkpoint` and `inspect_checkpoint` are the library side of
`dirac-deploy fold` and `inspect`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from .checkpoint import LoadedCheckpoint, LoadOptions, checkpoint_from_object
from .checkpoint.reading import load_torch_file
from .errors import CheckpointError, DiracDeployError, EquivalenceError
from .fileio import check_output_path, model_file_kind
from .folding.chain import canonicalize, folded_source_ops, name_activations, to_plain
from .folding.fold import fold
from .folding.verify import DEFAULT_RTOL, Proof, compare, seeded_inputs
from .models.plain import PlainNet
from .onnxfile import OnnxArtifact, metadata_floats, read_onnx
from .plainfile import is_plain_file, plain_from_payload, save_plain
from .spec import MAX_INPUT_SIZE, DiracNetSpec, ScaledIdentitySpec
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
                "layers": None if self.plain is None else _layer_histogram(self.plain)}


def _layer_histogram(plain: PlainNet) -> dict[str, int]:
    counts: dict[str, int] = {}
    for layer in plain.layers:
        counts[layer.kind] = counts.get(layer.kind, 0) + 1
    return counts


@dataclass
class FileReport:
    """What a plain.pth or an exported .onnx holds (`inspect FILE`), with the checks run on it."""

    path: Path
    kind: str  # "plain file" or "onnx"
    name: str
    input_shape: tuple[int, int, int]
    num_classes: int
    parameters: int | None
    flops: int | None
    ops: dict[str, int]  # layer kinds (plain) or ONNX op types
    meta: dict
    checks: list[tuple[str, str]] = field(default_factory=list)  # (what was checked, the result)
    mean: list[float] | None = None
    std: list[float] | None = None
    provenance: dict = field(default_factory=dict)  # where mean/std and the input size came from

    @property
    def ok(self) -> bool:
        """False when a check run on the file failed (`inspect` then exits 1)."""
        return not any(result.startswith("FAILED") for _, result in self.checks)

    def to_json(self) -> dict:
        return {"schema": "dirac-deploy/inspect", "version": REPORT_VERSION, "kind": self.kind,
                "path": str(self.path), "architecture": {"name": self.name}, "input": {
                    "shape": list(self.input_shape), "mean": self.mean, "std": self.std,
                    "provenance": dict(self.provenance)},
                "num_classes": self.num_classes, "parameters": self.parameters, "flops": self.flops,
                "ops": dict(self.ops), "checks": [{"check": c, "result": r} for c, r in self.checks],
                "ok": self.ok, "meta": self.meta}


@dataclass
class LoadedModel:
    """A model file, opened and verified: what export, bench and serve need, with nothing to re-derive.

    Attributes:
        path: the file.
        kind: "checkpoint", "plain file" or "onnx".
        source: how it was obtained, for humans ("checkpoint (v2-flat-params), folded and verified").
        name: the architecture's name.
        input_shape: (channels, height, width) of one image.
        num_classes: width of the logits.
        meta: provenance (the plain file's `meta`; for ONNX its metadata_props).
        plain: the verified plain chain in eval mode (None for ONNX).
        unfolded: the model as trained, when the source is an unfolded checkpoint.
        onnx: the artifact, for an ONNX source.
        fold: the fold and its proof, for a checkpoint.
    """

    path: Path
    kind: str
    source: str
    name: str
    input_shape: tuple[int, int, int]
    num_classes: int
    meta: dict
    plain: PlainNet | None = None
    unfolded: nn.Module | None = None
    onnx: OnnxArtifact | None = None
    fold: FoldReport | None = None

    @property
    def layer_kinds(self) -> set[str]:
        return {layer.kind for layer in self.plain.layers} if self.plain is not None else set()


def _flops(model, spec, measure: bool) -> int | None:
    # FLOPs take a full forward pass at the model's input size; callers that only need the chain skip it.
    return count_flops(model, spec.in_channels, spec.input_size) if measure else None


def _inspect(loaded: LoadedCheckpoint, measure: bool = True) -> dict:
    spec = loaded.spec
    source_model = loaded.model
    if loaded.folded_source:  # count the source's own tensors (in its own form), not the transcription's copy
        ops = folded_source_ops(spec, loaded.folded_state_dict, f"{loaded.layout} checkpoint")
        source_model = to_plain(name_activations(ops))
    return dict(path=loaded.path, sha256=loaded.sha256, layout=loaded.layout,
                layout_description=loaded.layout_description, spec=spec, folded_source=loaded.folded_source,
                parameters=count_parameters(source_model), flops=_flops(source_model, spec, measure),
                notes=list(loaded.notes), provenance=dict(loaded.provenance))


def _folded_chain(loaded: LoadedCheckpoint, ncrelu: str) -> PlainNet:
    """The plain chain of an already-folded source: its tensors (shapes checked against the spec), then the same
    exact rewrites as any fold (`folding.chain.canonicalize`)."""
    return to_plain(canonicalize(folded_source_ops(loaded.spec, loaded.folded_state_dict,
                                                   f"{loaded.layout} checkpoint"), ncrelu))


def plain_meta(loaded: LoadedCheckpoint, proof: Proof, ncrelu: str = "keep") -> dict:
    """Provenance stored with a folded chain: source hash, layout, architecture, fold proof and form, input spec."""
    from . import __version__

    spec = loaded.spec
    return {"source": {"file": loaded.path.name, "sha256": loaded.sha256}, "layout": loaded.layout,
            "architecture": {"name": spec.name, **spec.to_dict()}, "fold_proof": proof.to_dict(),
            "fold": {"ncrelu": ncrelu if getattr(spec, "version", 2) == 1 else None},
            "input_size": spec.input_size, "in_channels": spec.in_channels, "num_classes": spec.num_classes,
            "mean": list(spec.mean), "std": list(spec.std), "provenance": dict(loaded.provenance),
            "dirac_deploy_version": __version__, "torch_version": str(torch.__version__)}


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
        result = fold(loaded.model, check_batch=check_batch, seed=seed, rtol=rtol, ncrelu=ncrelu)
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
        report.output = save_plain(output, report.plain, plain_meta(loaded, report.proof, options.ncrelu))
    return report


def _input_shape(plain: PlainNet, meta: dict, where: str) -> tuple[int, int, int]:
    size = meta.get("input_size", 224)
    if not isinstance(size, int) or isinstance(size, bool) or not 1 <= size <= MAX_INPUT_SIZE:
        raise CheckpointError(f"{where}: metadata input_size {size!r} is not an image size (an integer in 1.."
                              f"{MAX_INPUT_SIZE}); re-fold the checkpoint or pass --input-size")
    first, last = plain.layers[0], plain.layers[-1]
    if first.kind != "conv" or last.kind != "linear":
        raise CheckpointError(f"{where}: a plain chain starts with a conv and ends with a linear layer; this one "
                              f"goes from {first.kind!r} to {last.kind!r}")
    return (int(first.args["in_channels"]), size, size)


def _check_runs(plain: PlainNet, shape: tuple[int, int, int], where: str) -> None:
    """One image through the chain at its recorded input size, so an input too small for its pooling (or any
    other inconsistency) is one line here, not an exporter's log later."""
    try:
        with torch.no_grad():
            plain(torch.zeros(1, *shape))
    except (RuntimeError, ValueError, IndexError) as e:
        first = (str(e).strip().splitlines() or [type(e).__name__])[0][:200]
        raise CheckpointError(f"{where}: the chain does not run on a {shape[0]}x{shape[1]}x{shape[2]} input ({first}); "
                              f"pass the size it was trained at with --input-size") from None


def _from_plain(path: Path, obj, options: LoadOptions) -> LoadedModel:
    plain, meta = plain_from_payload(obj, str(path))
    if options.input_size is not None:
        meta = {**meta, "input_size": options.input_size}
    shape = _input_shape(plain, meta, str(path))
    _check_runs(plain, shape, str(path))
    name = meta.get("architecture", {}).get("name", "plain chain") if isinstance(meta.get("architecture"), dict) \
        else "plain chain"
    return LoadedModel(path, "plain file", "plain file", name, shape, int(plain.layers[-1].args["out_features"]),
                       meta, plain)


def _from_onnx(path: Path) -> LoadedModel:
    art = read_onnx(path)
    meta = dict(art.metadata)
    return LoadedModel(path, "onnx", "ONNX file", art.architecture, art.input_shape, art.num_classes, meta,
                       onnx=art)


def load_model(path: str | Path, options: LoadOptions | None = None, *, check_batch: int = 4,
               measure: bool = False) -> LoadedModel:
    """Open a checkpoint (folded and verified), a plain file or an ONNX file.

    Args:
        path: the file.
        options: trust, BN eps and metadata overrides for checkpoints (`LoadOptions`).
        check_batch: seeded images the fold proof runs on (checkpoints only).
        measure: also count FLOPs before and after the fold (one extra forward pass each).

    Raises:
        CheckpointError: unreadable, unsafe, unknown layout or damaged file.
        EquivalenceError: a checkpoint whose fold misses the tolerance.
    """
    path = Path(path)
    options = options or LoadOptions()
    if model_file_kind(path) == "onnx":
        return _from_onnx(path)
    obj = load_torch_file(path, trust=options.trust_checkpoint)
    if is_plain_file(obj):
        return _from_plain(path, obj, options)
    loaded = checkpoint_from_object(obj, path, options)
    report = fold_loaded(loaded, check_batch=check_batch, measure=measure, ncrelu=options.ncrelu)
    spec = loaded.spec
    meta = plain_meta(loaded, report.proof, options.ncrelu)
    return LoadedModel(path, "checkpoint", f"checkpoint ({report.layout}), folded and verified", spec.name,
                       (spec.in_channels, spec.input_size, spec.input_size), spec.num_classes, meta, report.plain,
                       None if loaded.folded_source else loaded.model, fold=report)


def source_sha256(path: str | Path, options: LoadOptions | None = None) -> str:
    """The sha256 of the checkpoint a model file comes from, without folding anything: the file's own for a
    checkpoint, the recorded one for a plain.pth or an exported .onnx ('' when none is recorded)."""
    from .fileio import sha256_file

    path = Path(path)
    options = options or LoadOptions()
    if model_file_kind(path) == "onnx":  # its metadata only: the full read and checks come with load_model
        import onnx

        try:
            props = onnx.load(str(path), load_external_data=False).metadata_props
        except Exception:  # protobuf errors share no base class; load_model reports the file properly
            return ""
        return next((p.value for p in props if p.key == "dirac_deploy.source_sha256"), "")
    obj = load_torch_file(path, trust=options.trust_checkpoint)
    if is_plain_file(obj):
        source = obj.get("meta", {}).get("source") if isinstance(obj.get("meta"), dict) else None
        return str(source.get("sha256", "")) if isinstance(source, dict) else ""
    return sha256_file(path)


def inspect_file(path: str | Path, options: LoadOptions | None = None) -> InspectReport | FileReport:
    """What any model file holds, without folding a checkpoint: an `InspectReport` for a checkpoint, a
    `FileReport` for a plain.pth (its layers, size and provenance) or an .onnx (its ops, the audit and the
    parity probe re-run in ONNX Runtime)."""
    path = Path(path)
    options = options or LoadOptions()
    if model_file_kind(path) == "onnx":
        from .onnxfile import check_artifact, op_histogram

        loaded = _from_onnx(path)
        art = loaded.onnx
        try:
            proof = check_artifact(art)
            checks = [("audit", f"passed: only {art.graph_kind} chain ops"),
                      ("parity probe", f"passed: {proof.describe()}")]
        except DiracDeployError as e:
            checks = [("audit and parity probe", f"FAILED: {e}")]
        meta = loaded.meta
        provenance = {k: meta[f"dirac_deploy.{k}_source"] for k in ("normalization", "input_size")
                      if meta.get(f"dirac_deploy.{k}_source")}
        return FileReport(path, "onnx", loaded.name, loaded.input_shape, loaded.num_classes, None, None,
                          op_histogram(art.model), meta, checks, metadata_floats(meta.get("dirac_deploy.mean")),
                          metadata_floats(meta.get("dirac_deploy.std")), provenance)
    obj = load_torch_file(path, trust=options.trust_checkpoint)
    if not is_plain_file(obj):
        return inspect_checkpoint(path, options)
    loaded = _from_plain(path, obj, options)
    plain = loaded.plain
    checks = [("load", "rebuilt from plain data; tensors finite and matching their layers")]
    proof = loaded.meta.get("fold_proof")
    if isinstance(proof, dict) and "max_rel_error" in proof:
        checks.append(("fold proof (recorded)", f"max |logit error| {proof['max_rel_error']:.3g} of max|logit|, "
                                                f"top-1 agreement {proof.get('top1_agreement', 0):.0%}"))
    meta = loaded.meta
    return FileReport(path, "plain file", loaded.name, loaded.input_shape, loaded.num_classes,
                      count_parameters(plain), count_flops(plain, loaded.input_shape[0], loaded.input_shape[1]),
                      _layer_histogram(plain), meta, checks, meta.get("mean"), meta.get("std"),
                      meta.get("provenance", {}))

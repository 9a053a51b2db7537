"""Checkpoint -> model: read safely, detect the layout, infer the architecture, validate, build.

`load_checkpoint(path)` is the one entry point; it never folds. The result holds either an unfolded
model (`DiracNet`, `ScaledIdentityNet`) or, for an already-folded source, the source's tensors under plain-chain
names plus a literal transcription of the source's own forward to verify the chain against (the pipeline
builds and checks that chain).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from ..errors import CheckpointError, OptionError, UnknownLayoutError
from ..fileio import sha256_file
from ..load_options import LoadOptions
from ..models.dirac import DiracNet
from ..models.scaled_identity import ScaledIdentityNet
from ..spec import MAX_INPUT_SIZE, DiracNetSpec, ScaledIdentitySpec
from .formats import LAYOUTS
from .infer import check_against, infer_spec, with_overrides
from .reading import load_torch_file, unwrap


@dataclass
class LoadedCheckpoint:
    path: Path
    sha256: str
    layout: str
    layout_description: str
    spec: DiracNetSpec | ScaledIdentitySpec
    model: nn.Module  # DiracNet, ScaledIdentityNet, or OriginalFoldedNet for a folded source
    folded_state_dict: dict | None = None  # a folded source's tensors under plain-chain names
    notes: list[str] = field(default_factory=list)
    # Where the input size and the normalization came from: "checkpoint", "given" (options) or "assumed: ...".
    provenance: dict[str, str] = field(default_factory=dict)

    @property
    def folded_source(self) -> bool:
        return self.folded_state_dict is not None

    @property
    def unfolded(self) -> DiracNet | ScaledIdentityNet:
        """The model as trained, to fold (a folded source has none: its chain is read, not folded)."""
        if not isinstance(self.model, (DiracNet, ScaledIdentityNet)):
            raise TypeError(f"a {self.layout} checkpoint is already folded; it has no model to fold")
        return self.model

    def folded(self) -> tuple[DiracNetSpec, dict]:
        """A folded source's architecture and tensors under plain-chain names (`folding.chain.folded_source_ops`)."""
        if self.folded_state_dict is None or not isinstance(self.spec, DiracNetSpec):
            raise TypeError(f"a {self.layout} checkpoint is not a folded DiracNet")
        return self.spec, self.folded_state_dict


def _describe_keys(obj) -> str:
    if not isinstance(obj, dict):
        return f"a {type(obj).__name__}, not a dict"
    keys = [str(k) for k in obj]
    seen = ", ".join(keys[:8]) + (f", ... ({len(keys)} keys)" if len(keys) > 8 else "")
    inner = [f"{k} -> {', '.join(map(str, list(v)[:5]))}" for k, v in obj.items() if isinstance(v, dict)][:2]
    return seen + (f" [{'; '.join(inner)}]" if inner else "")


def _diracconv_layers(obj) -> list[str]:
    """Module names whose keys are those of a diracconv layer: weight, alpha, beta and a delta."""
    if not isinstance(obj, dict):
        return []
    keys = {k for k in obj if isinstance(k, str)}
    return sorted(k[: -len(".delta")] for k in keys if k.endswith(".delta")
                  and all(f"{k[: -len('.delta')]}.{a}" in keys for a in ("weight", "alpha", "beta")))


def detect_layout(obj):
    """The layout module whose `detect` accepts `obj`, or UnknownLayoutError listing what was seen and expected."""
    if isinstance(obj, dict) and obj.get("format") == "dirac-deploy/plain":
        raise CheckpointError("this is a folded plain file (written by dirac-deploy fold), not a checkpoint to fold; "
                              "use it directly with export, bench or serve, or look inside with: dirac-deploy "
                              "inspect FILE --layers")
    for layout in LAYOUTS:
        if layout.detect(obj):
            return layout
    user_convs = _diracconv_layers(obj)
    if user_convs:
        raise UnknownLayoutError(
            f"this looks like the state_dict of your own model built from diracconv layers ({len(user_convs)} "
            f"conv(s) with alpha, beta and delta, e.g. {user_convs[0]!r}); a bare state_dict does not say how its "
            f"layers connect, so it cannot be folded on its own. Load it into the module it came from and call "
            f"dirac_deploy.fold_module(model.eval(), example_input) (see the README: Any module)")
    names = ", ".join(layout.NAME for layout in LAYOUTS)
    raise UnknownLayoutError(f"unknown checkpoint layout: keys seen {_describe_keys(obj)[:200]}; none of the "
                             f"{len(LAYOUTS)} known layouts ({names}; each described in docs/formats.md) matches. "
                             f"For a model of your own, load it into its module and call "
                             f"dirac_deploy.fold_module(model.eval(), example_input)")


def _checked(spec):
    """Normalization values that fit the model: one mean and one std per input channel."""
    for name in ("mean", "std"):
        values = getattr(spec, name)
        if len(values) != spec.in_channels:
            raise OptionError(f"--{name} has {len(values)} value(s) but {spec.name} takes {spec.in_channels} input "
                              f"channel(s); give one per channel")
    return spec


def _normalise_scales(sd: dict) -> None:
    # Scalar alpha/beta were saved as shape [1] (or 0-d); the module stores them as 1-D vectors.
    for k, v in list(sd.items()):
        if isinstance(v, torch.Tensor) and k.endswith((".alpha", ".beta")) and v.dim() != 1:
            sd[k] = v.reshape(-1)


def recorded_input(obj, where) -> dict:
    """An optional top-level `normalization` dict ({mean, std, input_size}) a checkpoint of any layout may carry
    (the embedded default does; the original code's files do not)."""
    rec = obj.get("normalization") if isinstance(obj, Mapping) else None
    if rec is None:
        return {}
    if not isinstance(rec, Mapping):
        raise CheckpointError(f"{where}: 'normalization' is a {type(rec).__name__}, expected a dict of mean, std, "
                              f"input_size")
    out: dict[str, object] = {}
    for key in ("mean", "std"):
        v = rec.get(key)
        if v is not None:
            v = [float(x) for x in v] if isinstance(v, (list, tuple)) and all(
                isinstance(x, (int, float)) and not isinstance(x, bool) for x in v) else None
            if not v or not all(math.isfinite(x) for x in v) or (key == "std" and min(v) <= 0):
                raise CheckpointError(f"{where}: normalization[{key!r}] must be finite numbers"
                                      f"{' > 0' if key == 'std' else ''}, got {rec.get(key)!r:.80}")
            out[key] = tuple(v)
    size = rec.get("input_size")
    if size is not None:
        if not isinstance(size, int) or isinstance(size, bool) or not 8 <= size <= MAX_INPUT_SIZE:
            raise CheckpointError(f"{where}: normalization['input_size'] must be an integer in 8..{MAX_INPUT_SIZE}")
        out["input_size"] = size
    return out


def _assumed(stem: str, what: str) -> str:
    kind = "ImageNet" if stem == "imagenet" else "CIFAR"
    return f"assumed: the {kind} {what} of the original train.py (not recorded in the checkpoint)"


def _provenance(options: LoadOptions, recorded: dict, stem: str | None) -> dict[str, str]:
    def source(given, key, what):
        if given is not None:
            return "given"
        if key in recorded:
            return "checkpoint"
        return "checkpoint" if stem is None else _assumed(stem, what)

    norm_given = options.mean if options.mean is not None else options.std
    return {"input_size": source(options.input_size, "input_size", "input size"),
            "normalization": source(norm_given, "mean", "normalization")}


def load_checkpoint(path: str | Path, options: LoadOptions | None = None) -> LoadedCheckpoint:
    """Read any supported DiracNet checkpoint into an eval-mode model.

    Raises:
        CheckpointError and subclasses: unreadable, unsafe, unknown layout, inconsistent or non-finite tensors.
    """
    options = options or LoadOptions()
    return checkpoint_from_object(load_torch_file(path, trust=options.trust_checkpoint), path, options)


def checkpoint_from_object(obj, path: str | Path, options: LoadOptions | None = None,
                           sha256: str | None = None) -> LoadedCheckpoint:
    """`load_checkpoint` for an object already read with `load_torch_file` from `path` (`sha256`: the file's,
    when the caller has it already)."""
    options = options or LoadOptions()
    path = Path(path)
    sha256 = sha256 or sha256_file(path)
    recorded = recorded_input(obj, path)
    if recorded or (isinstance(obj, Mapping) and "normalization" in obj):
        obj = {k: v for k, v in obj.items() if k != "normalization"}
    obj = unwrap(obj)
    layout = detect_layout(obj)
    raw = layout.read(obj)
    cast = sorted({str(v.dtype).removeprefix("torch.") for v in raw.state_dict.values()
                   if isinstance(v, torch.Tensor) and v.is_floating_point() and v.dtype != torch.float32})
    sd = {k: (v.float() if isinstance(v, torch.Tensor) and v.is_floating_point() else v)
          for k, v in raw.state_dict.items()}
    if cast:
        raw.notes.append(f"weights stored as {', '.join(cast)} were read as float32"
                         f"{' (exact)' if 'float64' not in cast else ' (float64 rounded to float32)'}")
    def pick(key):  # an option wins over what the checkpoint records
        value = getattr(options, key)
        return value if value is not None else recorded.get(key)

    overrides = dict(bn_eps=options.bn_eps, input_size=pick("input_size"), mean=pick("mean"), std=pick("std"),
                     final_relu=options.final_relu if options.final_relu is not None else raw.hints.get("final_relu"))
    if raw.folded:
        source = {k.removeprefix("features."): v for k, v in obj.items()}
        spec = _checked(infer_spec(source, **overrides))
        reference = layout.reference(obj, spec)
        return LoadedCheckpoint(path, sha256, layout.NAME, layout.DESCRIPTION, spec, reference.eval(),
                                sd, raw.notes, _provenance(options, recorded, spec.stem))
    if raw.spec is not None:  # a layout that documents its architecture (input size and normalization too)
        spec = _checked(with_overrides(raw.spec, **{k: v for k, v in overrides.items() if k != "final_relu"}))
        model: nn.Module = ScaledIdentityNet(spec)
    else:
        _normalise_scales(sd)
        spec = _checked(infer_spec(sd, **overrides))
        model = DiracNet(spec)
    expected = model.state_dict()
    for k, v in expected.items():  # BN counters are bookkeeping the original code never saved
        if k.endswith("num_batches_tracked"):
            sd.setdefault(k, torch.zeros_like(v))
    check_against(expected, sd, f"{layout.NAME} checkpoint")
    model.load_state_dict(sd)
    stem = None if raw.spec is not None else spec.stem
    return LoadedCheckpoint(path, sha256, layout.NAME, layout.DESCRIPTION, spec, model.eval(),
                            None, raw.notes, _provenance(options, recorded, stem))


__all__ = ["LoadOptions", "LoadedCheckpoint", "checkpoint_from_object", "load_checkpoint", "detect_layout", "CheckpointError"]

"""Where an artifact comes from, typed once, with its three codecs: the plain file's `meta`, ONNX
`metadata_props` and OpenVINO `rt_info`.

Every `dirac_deploy.*` key lives here and nowhere else: stages read and write a `Provenance`, never a dict.
The parity probe and its tolerance are stored beside the provenance in the same metadata (they are what a
loader checks the artifact against), so their keys are here too. No torch: a server of `.onnx` files reads
this without PyTorch.
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from ..errors import CheckpointError
from .digest import CONTENT_KEY

PREFIX = "dirac_deploy."  # ONNX metadata_props keys; OpenVINO rt_info keys sit under ["dirac_deploy", key]
PROBE = "parity_probe"
PROBE_RTOL = "probe_rtol"
LOW_PRECISION_PROOF = "low_precision_proof"
INT8_TYPES = "int8_types"


@dataclass(frozen=True)
class Provenance:
    """What a plain chain, an ONNX graph or an IR was made from and how.

    Attributes:
        source_file / source_sha256: the checkpoint the chain was folded from ('' when unknown).
        layout: the checkpoint layout it was read as (docs/formats.md).
        architecture: the architecture's name; `spec` its full description (`DiracNetSpec.to_dict()`).
        input_size, in_channels, num_classes: the input image side, its channels and the logits' width.
        mean / std: the input normalization per channel; `origins` where it and the input size came from
            ("checkpoint", "given", "default: ..."), so a client knows whether to trust them.
        fold_proof: the measured fold error (`Proof.to_dict()`); fold_form: the DiracNet v1 NCReLU form.
        graph: the kind of graph ("folded", "unfolded (as trained)", "quantized-int8", ...).
        precision / method: a low-precision artifact's precision and quantization method.
        tool_version / torch_version: what wrote it.
        content_sha256: the digest of the weights and graph recorded when the artifact was built
            (`artifacts.digest`); a reader that got this far has checked it against the content ('' when the
            file records none: its provenance is then unverifiable). Writers stamp it; the codecs below only
            read it, so a provenance carried from one artifact to another never carries a stale digest.
    """

    source_file: str = ""
    source_sha256: str = ""
    layout: str = ""
    architecture: str = ""
    spec: Mapping[str, Any] | None = None
    input_size: int | None = None
    in_channels: int | None = None
    num_classes: int | None = None
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None
    origins: Mapping[str, str] = field(default_factory=dict)
    fold_proof: Mapping[str, Any] | None = None
    fold_form: str | None = None
    graph: str = ""
    precision: str = ""
    method: str = ""
    tool_version: str = ""
    torch_version: str = ""
    content_sha256: str = ""

    def replace(self, **changes: Any) -> Provenance:
        return dataclasses.replace(self, **changes)

    # -- the plain file's `meta` -------------------------------------------------------------------------------

    @classmethod
    def from_plain_meta(cls, meta: object, where: str = "plain file", channels: int | None = None) -> Provenance:
        """Read a plain file's `meta`, type-checking every field readers rely on (a damaged field is one
        CheckpointError naming it, never a traceback later). `channels`: the chain's input channels, which
        mean and std must match."""
        if not isinstance(meta, dict):
            raise CheckpointError(f"{where}: 'meta' is a {type(meta).__name__}, expected a dict; re-fold the "
                                  f"checkpoint")
        for key in ("architecture", "source", "fold_proof", "fold", "provenance"):
            if key in meta and not isinstance(meta[key], dict):
                raise CheckpointError(f"{where}: meta[{key!r}] is a {type(meta[key]).__name__}, expected a dict")
        arch, source = meta.get("architecture") or {}, meta.get("source") or {}
        size = meta.get("input_size")
        if size is not None and (not isinstance(size, int) or isinstance(size, bool)):
            raise CheckpointError(f"{where}: metadata input_size {size!r:.40} is not an image size (an integer); "
                                  f"re-fold the checkpoint or pass `input_size`")
        mean, std = (_floats(meta.get(k), k, where, channels) for k in ("mean", "std"))
        if std is not None and not all(v > 0 for v in std):
            raise CheckpointError(f"{where}: meta['std'] is {list(std)!r:.80}, expected {channels or 'n'} finite "
                                  f"numbers > 0")
        return cls(source_file=_str(source.get("file")), source_sha256=_str(source.get("sha256")),
                   layout=_str(meta.get("layout")), architecture=_str(arch.get("name")),
                   spec={k: v for k, v in arch.items() if k != "name"} or None, input_size=size,
                   in_channels=_int(meta.get("in_channels")), num_classes=_int(meta.get("num_classes")),
                   mean=mean, std=std, origins={str(k): str(v) for k, v in (meta.get("provenance") or {}).items()},
                   fold_proof=dict(meta["fold_proof"]) if meta.get("fold_proof") else None,
                   fold_form=(meta.get("fold") or {}).get("ncrelu"), tool_version=_str(meta.get("dirac_deploy_version")),
                   torch_version=_str(meta.get("torch_version")), content_sha256=_str(meta.get(CONTENT_KEY)))

    def to_plain_meta(self) -> dict:
        """The plain file's `meta` (the layout `fold` has always written; docs/formats.md)."""
        meta: dict[str, Any] = {
            "source": {"file": self.source_file, "sha256": self.source_sha256}, "layout": self.layout,
            "architecture": {"name": self.architecture, **(self.spec or {})},
            "fold_proof": dict(self.fold_proof or {}), "fold": {"ncrelu": self.fold_form},
            "input_size": self.input_size, "in_channels": self.in_channels, "num_classes": self.num_classes,
            "mean": None if self.mean is None else list(self.mean), "std": None if self.std is None else list(self.std),
            "provenance": dict(self.origins), "dirac_deploy_version": self.tool_version,
            "torch_version": self.torch_version}
        return meta

    # -- ONNX metadata_props (strings) -------------------------------------------------------------------------

    @classmethod
    def from_onnx_metadata(cls, props: Mapping[str, str]) -> Provenance:
        """Read the provenance `export` and `quantize` record in an ONNX file (absent or unreadable fields
        are empty: a foreign file records none)."""
        def get(key: str) -> str:
            return str(props.get(PREFIX + key, ""))

        return cls(source_sha256=get("source_sha256"), layout=get("layout"), architecture=get("architecture"),
                   input_size=_int(get("input_size")), mean=floats_from_text(get("mean")),
                   std=floats_from_text(get("std")),
                   origins={k: get(f"{k}_source") for k in ("normalization", "input_size") if get(f"{k}_source")},
                   fold_proof=_fold_errors(get("fold_max_abs_error"), get("fold_max_rel_error")),
                   graph=get("graph"), precision=get("precision"), method=get("method"),
                   tool_version=get("version"), content_sha256=get(CONTENT_KEY))

    def to_onnx_metadata(self, *, probe: str | None = None, probe_rtol: float | None = None,
                         low_precision_proof: Mapping | None = None, int8_types: str = "") -> dict[str, str]:
        """The metadata_props an artifact records: this provenance, and what a loader checks it against."""
        proof = self.fold_proof or {}
        props = {
            "source_sha256": self.source_sha256, "layout": self.layout, "architecture": self.architecture,
            "input_size": "" if self.input_size is None else str(self.input_size),
            "mean": json.dumps(list(self.mean or [])), "std": json.dumps(list(self.std or [])),
            "normalization_source": self.origins.get("normalization", ""),
            "input_size_source": self.origins.get("input_size", ""),
            "fold_max_abs_error": repr(proof["max_abs_error"]) if "max_abs_error" in proof else "",
            "fold_max_rel_error": repr(proof["max_rel_error"]) if "max_rel_error" in proof else "",
            "version": self.tool_version, "graph": self.graph, "precision": self.precision, "method": self.method,
            LOW_PRECISION_PROOF: "" if low_precision_proof is None else json.dumps(dict(low_precision_proof)),
            INT8_TYPES: int8_types, PROBE: probe or "",
            PROBE_RTOL: "" if probe_rtol is None else repr(probe_rtol)}
        return {PREFIX + k: v for k, v in props.items() if v}

    # -- OpenVINO rt_info --------------------------------------------------------------------------------------

    @classmethod
    def from_rt_info(cls, get: Callable[[str], str]) -> Provenance:
        """Read an IR's provenance; `get(key)` returns rt_info["dirac_deploy"][key] or ''."""
        return cls.from_onnx_metadata({PREFIX + k: get(k) for k in _ONNX_KEYS if get(k)})

    def to_rt_info(self, **check: Any) -> dict[str, str]:
        """rt_info["dirac_deploy"][key] -> value: the same fields as the ONNX metadata (`to_onnx_metadata`)."""
        return {k.removeprefix(PREFIX): v for k, v in self.to_onnx_metadata(**check).items()}


_ONNX_KEYS = ("source_sha256", "layout", "architecture", "input_size", "mean", "std", "normalization_source",
              "input_size_source", "fold_max_abs_error", "fold_max_rel_error", "version", "graph", "precision",
              "method", LOW_PRECISION_PROOF, INT8_TYPES, PROBE, PROBE_RTOL, CONTENT_KEY)


def metadata_value(props: Mapping[str, str], key: str) -> str:
    """One recorded value of an ONNX file's metadata by its short name (`PROBE`, `PROBE_RTOL`, ...), '' if absent."""
    return str(props.get(PREFIX + key, ""))


def rt_info_reader(net) -> Callable[[str], str]:
    """`get(key)` over an OpenVINO model's rt_info["dirac_deploy"]."""
    def get(key: str) -> str:
        return net.get_rt_info(["dirac_deploy", key]).astype(str) if net.has_rt_info(["dirac_deploy", key]) else ""
    return get


def write_rt_info(net, values: Mapping[str, str]) -> None:
    """Record `values` (from `Provenance.to_rt_info`) in an OpenVINO model's rt_info["dirac_deploy"]."""
    for key, value in values.items():
        net.set_rt_info(str(value), ["dirac_deploy", key])


def floats_from_text(text: object) -> tuple[float, ...] | None:
    """A list of numbers recorded as JSON text (mean, std); None when absent or not such a list."""
    try:
        values = json.loads(text) if isinstance(text, str) and 0 < len(text) < 10_000 else None
    except ValueError:
        return None
    if not isinstance(values, list) or not values or not all(
            isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in values):
        return None
    return tuple(float(v) for v in values)


def _floats(value: object, key: str, where: str, channels: int | None) -> tuple[float, ...] | None:
    if value is None:
        return None
    if (not isinstance(value, list) or (channels is not None and len(value) != channels) or not all(
            isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x) for x in value)):
        raise CheckpointError(f"{where}: meta[{key!r}] is {value!r:.80}, expected {channels or 'n'} finite numbers"
                              f"{' > 0' if key == 'std' else ''}")
    return tuple(float(x) for x in value)


def _str(value: object) -> str:
    return value if isinstance(value, str) else "" if value is None else str(value)


def _int(value: object) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.isdigit():
        return int(value)
    return None


def _fold_errors(abs_text: str, rel_text: str) -> dict[str, float] | None:
    out = {}
    for key, text in (("max_abs_error", abs_text), ("max_rel_error", rel_text)):
        try:
            out[key] = float(text)
        except ValueError:
            continue
    return out or None

"""The folded artifact (`plain.pth`): self-describing, readable with `torch.load(weights_only=True)`.

Contents: `{"format": "dirac-deploy/plain", "version": 1, "layers": [LayerSpec dicts], "state_dict": {...},
"meta": {...}}`. `meta` is the `Provenance` in its plain-file form (`Provenance.to_plain_meta`): the source
sha256, detected layout, architecture, the measured fold error, input size and normalization.
`PlainArtifact` is the chain in memory with that provenance, whether read from a plain.pth or folded from a
checkpoint (`opener.open_artifact`).
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch

from .. import runtimes
from ..checkpoint.reading import load_torch_file
from ..errors import CheckpointError, EquivalenceError, first_line
from ..fileio import atomic_write
from ..kinds import KINDS, ArtifactKind
from ..models.dirac import DiracNet
from ..models.plain import PlainNet
from ..models.scaled_identity import ScaledIdentityNet
from ..proof import DEFAULT_RTOL, Proof, compare_logits
from ..runtimes import Runner
from ..spec import MAX_INPUT_SIZE, LayerSpec
from .digest import CONTENT_KEY, check_content, plain_content_sha256
from .onnx import probe_inputs
from .provenance import Provenance

FORMAT = "dirac-deploy/plain"
VERSION = 1


@dataclass
class PlainArtifact:
    """A verified plain chain in memory with its provenance: read from a plain.pth, or folded from a checkpoint
    (then `unfolded` is the model as trained, when the source had one, and `fold` the fold and its proof).

    Attributes:
        path: the file it was read or folded from.
        origin: "plain file" or "checkpoint".
        source: how it was obtained, for humans ("checkpoint (v2-flat-params), folded and verified").
    """

    path: Path
    plain: PlainNet
    provenance: Provenance
    input_shape: tuple[int, int, int]
    num_classes: int
    origin: str = "plain file"
    source: str = "plain file"
    unfolded: DiracNet | ScaledIdentityNet | None = None  # the model as trained, for a checkpoint
    fold: Any = None  # pipeline.FoldReport for a checkpoint

    kind: ClassVar[ArtifactKind] = KINDS["torch"]
    verified_by: ClassVar[str] = "chain reproduced against itself in float64"

    @property
    def model(self) -> PlainNet:
        return self.plain

    @property
    def name(self) -> str:
        return self.provenance.architecture or "plain chain"

    @property
    def layer_kinds(self) -> set[str]:
        return {layer.kind for layer in self.plain.layers}

    def check(self, runner: Runner | None = None, *, batch: int = 2, rtol: float = DEFAULT_RTOL) -> Proof:
        """`runner` (default: the chain on PyTorch eager, fp32) against the chain itself computed in float64,
        on `batch` seeded N(0, 1) images (`artifacts.onnx.probe_inputs`, the images an export's probe records).
        A plain file carries no logits of its own: its weights are the reference (their digest is checked when
        the file is read), and float64 is the one computation of them no runtime shortcut touches.

        Raises:
            EquivalenceError: the runner's logits differ beyond `rtol` or disagree on a top-1 class.
        """
        x = probe_inputs(batch, self.input_shape)
        reference = copy.deepcopy(self.plain).double().eval()
        with torch.no_grad():
            ref = reference(torch.from_numpy(x).double()).numpy()
        runner = runner or runtimes.build("torch", self.plain)
        got = np.asarray(runner.run(x))
        where = runtimes.engine(runner.engine).label
        if got.shape != ref.shape:
            raise EquivalenceError(f"{self.path}: {where} returns logits of shape {list(got.shape)}, the chain "
                                   f"{list(ref.shape)}")
        proof = compare_logits(ref, got, rtol=rtol, input_shape=tuple(x.shape),
                               reference_name="chain in float64")
        if not proof.ok:
            raise EquivalenceError(f"{self.path} on {where} does not reproduce its chain: {proof.describe()}")
        return proof

    def check_runs(self) -> None:
        """One image through the chain at its recorded input size, so an input too small for its pooling (or
        any other inconsistency) is one line here, not an exporter's log later.

        Raises:
            CheckpointError: the chain does not run on its input shape (names the fix).
        """
        shape = self.input_shape
        try:
            with torch.no_grad():
                self.plain(torch.zeros(1, *shape))
        except (RuntimeError, ValueError, IndexError) as e:
            raise CheckpointError(f"{self.path}: the chain does not run on a {shape[0]}x{shape[1]}x{shape[2]} input "
                                  f"({first_line(e)[:200]}); pass the size it was trained at with `input_size`") from None


def plain_artifact(path: Path, plain: PlainNet, provenance: Provenance, input_size: int | None = None,
                   **kw: Any) -> PlainArtifact:
    """The artifact of a chain, its input shape from the chain and the provenance's input size (or
    `input_size`, the user's override), checked to run at that shape.

    Raises:
        CheckpointError: an input size out of range, a chain that is not conv ... linear, or one that does not
            run at its input size.
    """
    size = input_size if input_size is not None else provenance.input_size if provenance.input_size is not None \
        else 224
    if not 1 <= size <= MAX_INPUT_SIZE:
        raise CheckpointError(f"{path}: metadata input_size {size!r} is not an image size (an integer in 1.."
                              f"{MAX_INPUT_SIZE}); re-fold the checkpoint or pass `input_size`")
    first, last = plain.layers[0], plain.layers[-1]
    if first.kind != "conv" or last.kind != "linear":
        raise CheckpointError(f"{path}: a plain chain starts with a conv and ends with a linear layer; this one "
                              f"goes from {first.kind!r} to {last.kind!r}")
    if input_size is not None:
        provenance = provenance.replace(input_size=input_size)
    art = PlainArtifact(Path(path), plain, provenance, (int(first.args["in_channels"]), size, size),
                        int(last.args["out_features"]), **kw)
    art.check_runs()
    return art


def content_sha256(layers: list, meta: dict, state_dict: dict) -> str:
    """The plain file's content digest (`artifacts.digest.plain_content_sha256`) over its stored layers, meta
    and tensors (raw bytes, whatever their dtype)."""
    def tensors():
        for name, t in state_dict.items():
            if not isinstance(t, torch.Tensor):
                raise ValueError(f"{name} is a {type(t).__name__}, not a tensor")
            flat = t.detach().cpu().contiguous().reshape(-1)
            yield name, str(t.dtype), tuple(t.shape), flat.view(torch.uint8).numpy().tobytes()

    return plain_content_sha256(layers, meta, tensors())


def save_plain(path: str | Path, plain: PlainNet, meta: Provenance | dict) -> Path:
    """Write `plain` and its provenance (or a plain-file `meta` dict) atomically (temp file + rename), stamped
    with the digest of its content (a later edit of the weights voids the recorded proof)."""
    if isinstance(meta, Provenance):
        meta = meta.to_plain_meta()
    layers = [layer.to_dict() for layer in plain.layers]
    state_dict = {k: v.detach().cpu().contiguous() for k, v in plain.state_dict().items()}
    meta = {**meta, CONTENT_KEY: content_sha256(layers, meta, state_dict)}
    payload = {"format": FORMAT, "version": VERSION, "layers": layers, "state_dict": state_dict, "meta": meta}

    def write(tmp: Path) -> None:
        torch.save(payload, tmp)
        # Prove the artifact loads the way users will load it before it replaces anything.
        plain_from_payload(torch.load(tmp, map_location="cpu", weights_only=True), str(path))

    return atomic_write(path, write)


def is_plain_file(obj) -> bool:
    return isinstance(obj, dict) and obj.get("format") == FORMAT


def plain_from_payload(obj, where: str) -> tuple[PlainNet, Provenance]:
    """Rebuild the chain from a loaded payload, validating it as untrusted data."""
    if not is_plain_file(obj):
        raise CheckpointError(f"{where} is not a dirac-deploy plain file (no format tag {FORMAT!r}); "
                              f"make one with: dirac-deploy fold CHECKPOINT -o plain.pth")
    if obj.get("version") != VERSION:
        raise CheckpointError(f"{where} is plain-file version {obj.get('version')!r}; this dirac-deploy reads version {VERSION}")
    try:
        layers = [LayerSpec.from_dict(d) for d in obj["layers"]]
        _check_layers(layers, obj["state_dict"])  # before building: the layer args decide what gets allocated
        plain = PlainNet(layers)
        plain.load_state_dict(obj["state_dict"], strict=True)
        actual = content_sha256(obj["layers"], obj.get("meta", {}), obj["state_dict"])
    except (KeyError, TypeError, ValueError, RuntimeError, AttributeError) as e:
        first = first_line(e)
        raise CheckpointError(f"{where} is a damaged plain file: {first[:300]}") from None
    for k, v in plain.state_dict().items():
        if not torch.isfinite(v).all():
            raise CheckpointError(f"{where}: {k} contains NaN/Inf values")
    provenance = Provenance.from_plain_meta(obj.get("meta", {}), where, plain.layers[0].args.get("in_channels"))
    check_content(provenance.content_sha256, actual, where)  # an edited file's recorded proof does not apply
    return plain.eval(), provenance


_POSITIVE = {"kernel_size", "stride", "in_channels", "out_channels", "in_features", "out_features"}
_WEIGHT_SHAPES = {"conv": lambda a: (a["out_channels"], a["in_channels"], a["kernel_size"], a["kernel_size"]),
                  "linear": lambda a: (a["out_features"], a["in_features"])}


def _check_layers(layers: list[LayerSpec], state_dict) -> None:
    """Layer arguments that are small integers and agree with the stored tensors (so building allocates only
    what the file holds)."""
    if not isinstance(state_dict, dict) or not layers:
        raise ValueError("no layers or no state_dict")
    names = [layer.name for layer in layers]
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:  # two entries would build one module: the file would say more layers than it runs
        raise ValueError(f"layer name(s) {', '.join(map(repr, repeated))[:200]} appear more than once")
    for key, value in state_dict.items():
        if isinstance(value, torch.Tensor) and not value.is_floating_point():
            raise ValueError(f"{key} holds {value.dtype} values; a folded chain's tensors are floating point")
    for layer in layers:
        if not isinstance(layer.name, str) or not isinstance(layer.args, dict):
            raise ValueError(f"layer {layer.name!r} has malformed fields")
        for key, value in layer.args.items():
            if key == "negative_slope":
                if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                    raise ValueError(f"layer {layer.name!r}: negative_slope = {value!r:.40} is not a finite number")
                continue
            if isinstance(value, bool):
                continue
            if value is not None and (not isinstance(value, int) or not 0 <= value <= 1 << 20):
                raise ValueError(f"layer {layer.name!r}: {key} = {value!r:.40} is not a small non-negative integer")
            if key in _POSITIVE and value is not None and value < 1:
                raise ValueError(f"layer {layer.name!r}: {key} = {value} (must be at least 1)")
        if layer.kind in _WEIGHT_SHAPES:
            w = state_dict.get(f"{layer.name}.weight")
            shape = _WEIGHT_SHAPES[layer.kind](layer.args)
            if not isinstance(w, torch.Tensor) or tuple(w.shape) != shape:
                got = list(w.shape) if isinstance(w, torch.Tensor) else type(w).__name__
                raise ValueError(f"layer {layer.name!r} declares weight {list(shape)}, the file stores {got}")


def read_plain(path: str | Path) -> tuple[PlainNet, dict]:
    """The plain chain (eval mode) and its metadata (the plain-file form of its provenance)."""
    plain, provenance = plain_from_payload(load_torch_file(path), str(path))
    return plain, provenance.to_plain_meta()


def load_plain(path: str | Path) -> PlainNet:
    """Load a folded `plain.pth` as an `nn.Module` in eval mode; `.meta` holds its metadata."""
    plain, meta = read_plain(path)
    plain.meta = meta  # type: ignore[assignment]  # an attribute for the user, not a submodule
    return plain

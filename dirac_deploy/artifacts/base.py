"""The one shape every artifact has, whatever file it came from (`plain.PlainArtifact`, `onnx.OnnxArtifact`,
`ir.IrArtifact`): its kind, the typed model a runtime loads, its provenance and I/O contract, and a check that
proves a runner reproduces it. Code that takes "an artifact" is written against `Artifact` and never asks
which class it holds for any of these.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

if TYPE_CHECKING:
    from ..kinds import ArtifactKind
    from ..proof import Proof
    from ..runtimes import Runner
    from .provenance import Provenance


@runtime_checkable
class Artifact(Protocol):
    """A model file opened and checked into memory.

    Attributes:
        path: the file it was read (or folded) from.
        kind: its `kinds.ArtifactKind` (the runtimes that serve it, whether it needs torch).
        model: what a runtime loads (`runtimes.load`): a `PlainNet`, an `onnx.ModelProto`, an `openvino.Model`.
        provenance: the source, fold proof and input spec it records.
        input_shape, num_classes: its I/O contract (C, H, W) -> classes.
        source: how it was obtained, for people.
        verified_by: what its `check` compares, for people ("audit and parity probe").
    """

    path: Path
    provenance: Provenance
    input_shape: tuple[int, int, int]
    num_classes: int

    @property
    def kind(self) -> ArtifactKind: ...

    @property
    def model(self) -> Any: ...

    @property
    def name(self) -> str: ...

    @property
    def source(self) -> str: ...

    @property
    def verified_by(self) -> str: ...

    def check(self, runner: Runner | None = None) -> Proof:
        """`runner` (default: a new one on the kind's default runtime) against the artifact's own reference;
        raises when it does not reproduce it."""
        ...

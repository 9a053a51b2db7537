"""What kind of artifact a file holds and where each kind can be served, read from its bytes (no torch).

With `opener.open_artifact`, the one place a file's kind decides anything: `artifacts.deployed.read_deployed`
reads an exported or quantized file into its artifact without torch, and the server asks `kind_of` which
runtimes may serve it. It sits at the base, beside the file sniffing it reads (`fileio.model_file_kind`), so
any layer may ask what a file is.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from .fileio import model_file_kind
from .runtimes import served_on


@dataclass(frozen=True)
class ArtifactKind:
    """A kind of model file: its name for people, the runtimes that can serve it (the default first) and
    whether opening it needs PyTorch (a checkpoint or plain.pth is folded / rebuilt with torch, and served on
    ONNX Runtime or OpenVINO through an export in memory)."""

    key: str
    description: str
    needs_torch: bool
    commands: tuple[str, ...] = ("fold", "inspect", "export", "quantize", "bench", "serve")  # those that read it

    @property
    def runtimes(self) -> tuple[str, ...]:
        """The serving engines for this kind, the default first (`runtimes.served_on`, read from the engine table)."""
        return served_on(self.key)

    @property
    def default_runtime(self) -> str:
        return self.runtimes[0]


KINDS = {
    "onnx": ArtifactKind("onnx", "an ONNX graph", False, ("inspect", "export", "quantize", "serve")),
    "openvino-ir": ArtifactKind("openvino-ir", "an OpenVINO IR", False, ("inspect", "serve")),
    "pte": ArtifactKind("pte", "an ExecuTorch program", False, ("inspect", "serve")),
    "tflite": ArtifactKind("tflite", "a LiteRT program", False, ("inspect", "serve")),
    "torch": ArtifactKind("torch", "a PyTorch file (checkpoint or plain.pth)", True),
}


def kind_of(path: str | Path) -> ArtifactKind:
    """The kind of the model file at `path`, from its content.

    Raises:
        CheckpointError: missing, empty, or not a model file this tool reads (one line naming the file).
    """
    return KINDS[model_file_kind(Path(path))]

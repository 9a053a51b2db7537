"""An exported or quantized file read into its artifact without torch (`opener.open_artifact` opens any file)."""

from __future__ import annotations

from pathlib import Path

from ..errors import DiracDeployError
from ..kinds import ArtifactKind, kind_of
from .ir import IrArtifact
from .onnx import OnnxArtifact


def read_deployed(path: str | Path, kind: ArtifactKind | None = None) -> OnnxArtifact | IrArtifact:
    """An `.onnx` or an OpenVINO IR read into its artifact, without torch (`opener.open_artifact` for any
    file); `kind`, when the caller has sniffed the file already.

    Raises:
        DiracDeployError: a PyTorch file (it must be folded / exported first), or a file its reader refuses.
    """
    kind = kind or kind_of(path)
    if kind.key == "onnx":
        from .onnx import read_onnx

        return read_onnx(path)
    if kind.key == "openvino-ir":
        from .ir import read_ir

        return read_ir(path)
    raise DiracDeployError(f"{path} is {kind.description}, not an exported artifact; export it first "
                           f"(dirac-deploy export {Path(path).name} --onnx {Path(path).stem}.onnx)")

"""An exported or quantized file read into its artifact without torch (`opener.open_artifact` opens any file)."""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import DiracDeployError
from ..kinds import ArtifactKind, kind_of

if TYPE_CHECKING:
    from .ir import IrArtifact
    from .onnx import OnnxArtifact
    from .program import ProgramArtifact

# kind -> the reader of its files ("module:function" under artifacts/, imported when a file of the kind is read)
READERS = {"onnx": "onnx:read_onnx", "openvino-ir": "ir:read_ir", "pte": "pte:read_pte",
           "tflite": "tflite:read_tflite"}


def read_deployed(path: str | Path, kind: ArtifactKind | None = None) -> OnnxArtifact | IrArtifact | ProgramArtifact:
    """An `.onnx`, an OpenVINO IR or a lowered program (.pte, .tflite) read into its artifact (`OnnxArtifact`,
    `IrArtifact`, `PteArtifact`, `TfliteArtifact`), without torch (`opener.open_artifact` for any file); `kind`,
    when the caller
    has sniffed the file already.

    Raises:
        DiracDeployError: a PyTorch file (it must be folded / exported first), or a file its reader refuses.
    """
    kind = kind or kind_of(path)
    reader = READERS.get(kind.key)
    if reader is None:
        raise DiracDeployError(f"{path} is {kind.description}, not an exported artifact; export it first "
                               f"(dirac-deploy export {Path(path).name} --onnx {Path(path).stem}.onnx)")
    module, function = reader.split(":")
    return getattr(importlib.import_module(f"{__package__}.{module}"), function)(path)

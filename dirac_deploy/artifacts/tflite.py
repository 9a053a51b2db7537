"""The LiteRT artifact (`export --tflite`): the folded chain converted to a `.tflite` program, its record
(`artifacts.program`) a metadata entry of the model, `dirac_deploy_metadata`, whose buffer holds the JSON
(the buffer's bytes sit verbatim in the file, after their uint32 length).
"""

from __future__ import annotations

from pathlib import Path

from ..kinds import KINDS
from .program import ProgramArtifact, read_program

FORMAT = "dirac-deploy/tflite"


class TfliteArtifact(ProgramArtifact):
    """A LiteRT program read and checked (`artifacts.program.ProgramArtifact`)."""

    kind = KINDS["tflite"]
    source = "LiteRT program"
    engine = "litert"
    runtime_name = "LiteRT"
    format = FORMAT
    written_by = "dirac-deploy export --tflite"


def read_tflite(path: str | Path) -> TfliteArtifact:
    """Read a LiteRT program from `export --tflite`, its bytes checked against its digest (`read_program`)."""
    return read_program(path, TfliteArtifact)

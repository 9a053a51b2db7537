"""The ExecuTorch artifact (`export --pte`): the folded chain lowered to XNNPACK as a `.pte` program, its record
(`artifacts.program`) a constant method of the program, `dirac_deploy_metadata`, returning the JSON string (the
runtime returns the string; its bytes sit verbatim in the file).
"""

from __future__ import annotations

from pathlib import Path

from ..kinds import KINDS
from .program import METADATA_NAME, ProgramArtifact, read_program

FORMAT = "dirac-deploy/pte"
METADATA_METHOD = METADATA_NAME


class PteArtifact(ProgramArtifact):
    """An ExecuTorch program read and checked (`artifacts.program.ProgramArtifact`)."""

    kind = KINDS["pte"]
    source = "ExecuTorch program"
    engine = "executorch"
    runtime_name = "ExecuTorch"
    format = FORMAT
    written_by = "dirac-deploy export --pte"


def read_pte(path: str | Path) -> PteArtifact:
    """Read an ExecuTorch program from `export --pte`, its bytes checked against its digest (`read_program`)."""
    return read_program(path, PteArtifact)

"""Typed user-facing errors.

Every error a user can cause (a bad file, a wrong option, a model that fails its proof) is a
`DiracDeployError`. The CLI prints its message as one line and exits non-zero; anything else is a
bug and keeps its traceback.
"""


def first_line(e: BaseException, limit: int = 300) -> str:
    """The first non-empty line of an exception's message (its type's name when it has none), at most `limit`
    characters: what a one-line error quotes from a library's multi-line message."""
    lines = [line.strip() for line in str(e).splitlines() if line.strip()]
    return (lines[0] if lines else type(e).__name__)[:limit]


class DiracDeployError(Exception):
    """Base class: the message says what failed, what was seen and how to fix it."""


class CheckpointError(DiracDeployError):
    """A checkpoint file cannot be read, is unsafe to read, or its contents are inconsistent."""


class UnsafeCheckpointError(CheckpointError):
    """The file needs full unpickling (arbitrary code) and the caller did not opt in."""


class UnknownLayoutError(CheckpointError):
    """The keys match none of the supported checkpoint layouts."""


class EquivalenceError(DiracDeployError):
    """A transform's output does not reproduce its source within tolerance; nothing was written."""


class MissingDependencyError(DiracDeployError):
    """An optional dependency is not installed; the message names the install command."""


class OutputPathError(DiracDeployError):
    """An output path is unusable (equal to an input, unwritable directory, ...)."""


class ExportError(DiracDeployError):
    """An export step failed (graph audit, checker, unsupported option); nothing was written."""


class UnfoldableError(DiracDeployError):
    """The model's structure cannot become a same-width plain chain; the message names the block and why."""


class OptionError(DiracDeployError):
    """An option's value is out of range or does not fit the model (named, with what was given)."""

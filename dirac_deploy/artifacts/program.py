"""Lowered programs for edge runtimes (an ExecuTorch `.pte`, a LiteRT `.tflite`): the folded chain compiled for
one batch size, with its provenance, its I/O contract, how much of it the runtime's XNNPACK delegate runs, and
a parity probe, all in one record inside the program's own bytes.

The record is one JSON string, `{"format": "dirac-deploy/<kind>", "program": {input_shape, num_classes, batch,
delegation}, "provenance": {the ONNX metadata form of the provenance, with the probe}}`, stored where the
program format keeps data of its own (an ExecuTorch constant method, a LiteRT metadata buffer): both are
flatbuffers, whose strings and byte vectors sit verbatim in the file after their uint32 length. The content
digest is the sha256 of the whole file with the digest's own 64 hex digits read as zeros, so any other byte
(the program, the weights, the record) voids the recorded proof.

Files from strangers: the file is read once, bounded; the record is found and parsed, and the digest checked,
on the raw bytes, before the runtime sees the program. No torch and no runtime here.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, TypeVar

from .. import runtimes
from ..errors import CheckpointError, first_line
from ..kinds import ArtifactKind
from ..proof import DEFAULT_RTOL, Proof
from ..runtimes import Runner
from .digest import ONNX_CONTENT_KEY, check_content
from .onnx import MAX_CHANNELS, MAX_CLASSES, MAX_SIDE, narrowed_rtol, parse_probe, recorded_probe_proof
from .provenance import PROBE, PROBE_RTOL, Provenance, metadata_value

METADATA_NAME = "dirac_deploy_metadata"  # the constant method / metadata entry holding the record
MAX_PROGRAM_BYTES = 4 << 30  # a folded chain's weights; DiracNet-34 in fp32 is about 90 MB
MAX_RECORD_BYTES = 16 << 20
_ZERO_DIGEST = "0" * 64


def record_start(fmt: str) -> bytes:
    """The record's first bytes: json.dumps writes its first key, the format, so."""
    return b'{"format": "' + fmt.encode() + b'"'


def record_json(fmt: str, program: dict[str, Any], provenance: dict[str, str]) -> str:
    """The record a program carries (module docstring); its digest entry, if any, as written."""
    return json.dumps({"format": fmt, "program": program, "provenance": provenance})


def find_record(data: bytes, fmt: str, where: str, written_by: str) -> tuple[int, int, dict]:
    """(offset, length, parsed record) of the one `fmt` record in a program's bytes. A flatbuffer string or byte
    vector is its uint32 little-endian length, then its bytes: the record is read by that length, never by
    searching for its end.

    Raises:
        CheckpointError: no record (not written by `written_by`), more than one, or one that is not JSON.
    """
    start = record_start(fmt)
    at = data.find(start)
    if at < 0:
        raise CheckpointError(f"{where} carries no dirac-deploy record (it was not written by `{written_by}`), so "
                              f"it cannot be verified")
    if data.find(start, at + 1) >= 0:
        raise CheckpointError(f"{where} carries more than one dirac-deploy record; refused")
    length = int.from_bytes(data[at - 4:at], "little") if at >= 4 else -1
    if not 0 < length <= MAX_RECORD_BYTES or at + length > len(data):
        raise CheckpointError(f"{where}: its dirac-deploy record has a damaged length ({length}); refused")
    try:
        record = json.loads(data[at:at + length])
    except (ValueError, RecursionError) as e:
        raise CheckpointError(f"{where}: its dirac-deploy record is not JSON ({first_line(e)[:120]})") from None
    if not isinstance(record, dict) or not isinstance(record.get("program"), dict) \
            or not isinstance(record.get("provenance"), dict):
        raise CheckpointError(f"{where}: its dirac-deploy record lacks its program or provenance entries")
    return at, length, record


def _digest_span(data: bytes, at: int, length: int, where: str) -> tuple[int, str]:
    """(offset, hex) of the recorded digest's value inside the record's bytes."""
    key = f'"{ONNX_CONTENT_KEY}": "'.encode()
    k = data.find(key, at, at + length)
    if k < 0 or data.find(key, k + 1, at + length) >= 0:
        raise CheckpointError(f"{where}: its record holds no single content digest; refused")
    start = k + len(key)
    return start, data[start:start + 64].decode("ascii", "replace")


def content_sha256(data: bytes, digest_at: int) -> str:
    """sha256 of the program's bytes with the 64 hex digits at `digest_at` read as zeros."""
    h = hashlib.sha256()
    h.update(data[:digest_at])
    h.update(_ZERO_DIGEST.encode())
    h.update(data[digest_at + 64:])
    return h.hexdigest()


def stamp(data: bytes, fmt: str) -> bytes:
    """The program with its digest written in place of the zeros it was built with (same length, so the
    flatbuffer's offsets are untouched; the reader recomputes it)."""
    at, length, _ = find_record(data, fmt, "the built program", "dirac-deploy")
    digest_at, value = _digest_span(data, at, length, "the built program")
    if value != _ZERO_DIGEST:
        raise ValueError("the program was built with a digest already in its record")
    digest = content_sha256(data, digest_at)
    return data[:digest_at] + digest.encode() + data[digest_at + 64:]


@dataclass
class ProgramArtifact:
    """A lowered program read and checked: its bytes, I/O contract, provenance and recorded probe. Each program
    format is a subclass naming its kind, its runtime and its record's format."""

    path: Path
    data: bytes
    input_shape: tuple[int, int, int]
    num_classes: int
    provenance: Provenance
    batch: int  # the batch the program was compiled for
    delegation: dict[str, Any] = field(default_factory=dict)  # {"delegated": n, "not_delegated": {op: n}}
    metadata: dict[str, str] = field(default_factory=dict)  # the provenance in its ONNX metadata form

    kind: ClassVar[ArtifactKind]
    source: ClassVar[str]  # "ExecuTorch program"
    engine: ClassVar[str]  # the runtime that runs it ("executorch")
    runtime_name: ClassVar[str]  # that runtime for people ("ExecuTorch")
    format: ClassVar[str]  # its record's format ("dirac-deploy/pte")
    written_by: ClassVar[str]  # the command that writes it ("dirac-deploy export --pte")

    @property
    def verified_by(self) -> str:
        return f"parity probe in {self.runtime_name}'s runtime"

    @property
    def model(self) -> bytes:
        """The program's bytes (what the runtime loads)."""
        return self.data

    @property
    def name(self) -> str:
        return self.provenance.architecture or self.source

    def check(self, runner: Runner | None = None) -> Proof:
        """`runner` (default: the program's own runtime) against the logits recorded when the program was built,
        at the fp32 tolerance (the file may only narrow it).

        Raises:
            CheckpointError: no readable probe.
            EquivalenceError: logits that differ, or another shape.
        """
        probe = parse_probe(metadata_value(self.metadata, PROBE), self.input_shape)
        if probe is None:
            raise CheckpointError(f"{self.path} records no readable parity probe; it cannot be verified")
        x, ref = probe
        runner = runner or runtimes.build(self.engine, self.data)
        return recorded_probe_proof(str(self.path), x, ref, runner.run(x), runtime=self.runtime_name,
                                    rtol=narrowed_rtol(DEFAULT_RTOL, metadata_value(self.metadata, PROBE_RTOL)))


def _contract(program: dict, where: str) -> tuple[tuple[int, int, int], int, int]:
    shape, classes, batch = program.get("input_shape"), program.get("num_classes"), program.get("batch")
    if isinstance(shape, list) and len(shape) == 3 and all(type(d) is int and d > 0 for d in shape) \
            and type(classes) is int and type(batch) is int and 0 < classes <= MAX_CLASSES and 0 < batch <= 64 \
            and shape[0] <= MAX_CHANNELS and max(shape[1:]) <= MAX_SIDE:
        c, h, w = shape
        return (c, h, w), classes, batch
    raise CheckpointError(f"{where}: its record's I/O contract is not an image classifier's (input_shape "
                          f"{str(shape)[:60]}, num_classes {str(classes)[:20]}, batch {str(batch)[:20]})")


A = TypeVar("A", bound=ProgramArtifact)


def read_program(path: str | Path, cls: type[A]) -> A:
    """Read a program of `cls`'s format and check its bytes against the digest it records.

    Raises:
        CheckpointError: not a regular file, too large, no record, a damaged record, or bytes changed since it
            was written (`ContentEditedError`).
    """
    path = Path(path)
    if path.is_symlink() or not path.is_file():
        raise CheckpointError(f"{path} is not a regular file")
    if path.stat().st_size > MAX_PROGRAM_BYTES:
        raise CheckpointError(f"{path} is over {MAX_PROGRAM_BYTES >> 30} GiB; not a folded chain's program")
    return program_from_bytes(path.read_bytes(), path, cls)


def program_from_bytes(data: bytes, path: Path, cls: type[A]) -> A:
    """`read_program` of bytes in memory (`path`: where they came from, for messages)."""
    at, length, record = find_record(data, cls.format, str(path), cls.written_by)
    digest_at, recorded = _digest_span(data, at, length, str(path))
    check_content(recorded, content_sha256(data, digest_at), str(path))
    props = {str(k): str(v) for k, v in record["provenance"].items()}
    program = record["program"]
    shape, classes, batch = _contract(program, str(path))
    delegation = program.get("delegation") if isinstance(program.get("delegation"), dict) else {}
    return cls(path, data, shape, classes, Provenance.from_onnx_metadata(props), batch, delegation, props)

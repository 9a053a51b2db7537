"""Content digests: what ties an artifact's recorded proof to the exact bytes it was computed on.

Every artifact this tool writes records a sha256 of its *content*: the weights, the graph and every other
recorded field (provenance, parity probe, proofs), all but the digest itself. Every open recomputes it; a
mismatch means the file was edited after it was built (its weights scaled, a node added, its source forged),
so its recorded fold proof, parity probe and low-precision proof no longer describe it (`ContentEditedError`). A digest is no signature: anyone can recompute it after an
edit. It catches accidental and naive edits; `dirac-deploy verify --key` (signatures) catches deliberate ones.

- plain.pth: the layer list and the `meta` (canonical JSON) and every state_dict tensor (name, dtype, shape,
  bytes), sorted.
- ONNX: the model serialized deterministically without the digest's own `metadata_props` entry.
- OpenVINO IR: the .xml without the digest's own rt_info element, then the .bin's bytes.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Iterable, Mapping
from typing import Any

from ..errors import CheckpointError

CONTENT_KEY = "content_sha256"  # the plain meta key; rt_info["dirac_deploy"][CONTENT_KEY]
ONNX_CONTENT_KEY = "dirac_deploy." + CONTENT_KEY  # the ONNX metadata_props key


class ContentEditedError(CheckpointError):
    """The artifact's content does not match the digest recorded when it was built."""


def plain_content_sha256(layers: list[Mapping[str, Any]], meta: Mapping[str, Any],
                         tensors: Iterable[tuple[str, str, tuple, bytes]]) -> str:
    """sha256 over the canonical JSON of `layers` and of `meta` without the digest, then each (name, dtype,
    shape, raw bytes) sorted by name."""
    fields = {k: v for k, v in meta.items() if k != CONTENT_KEY} if isinstance(meta, Mapping) else meta
    h = hashlib.sha256(json.dumps([list(layers), fields], sort_keys=True, default=repr).encode())
    for name, dtype, shape, data in sorted(tensors, key=lambda t: t[0]):
        h.update(f"\0{name}\0{dtype}\0{list(shape)}\0{len(data)}\0".encode())
        h.update(data)
    return h.hexdigest()


def onnx_content_sha256(model) -> str:
    """sha256 of the model serialized deterministically, without the digest's own metadata entry, its
    initializers in one canonical form (raw little-endian bytes), so that moving weights to external data and
    back, or between `raw_data` and the typed fields, leaves the digest as it was."""
    import onnx
    from onnx import numpy_helper

    bare = onnx.ModelProto()
    bare.CopyFrom(model)
    for t in bare.graph.initializer:
        if t.data_location != onnx.TensorProto.EXTERNAL:  # external data not loaded: digested as it is
            t.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(t), t.name))
    kept = [(p.key, p.value) for p in bare.metadata_props if p.key != ONNX_CONTENT_KEY]
    del bare.metadata_props[:]
    for key, value in kept:
        bare.metadata_props.add(key=key, value=value)
    return hashlib.sha256(bare.SerializeToString(deterministic=True)).hexdigest()


def stamp_onnx(model) -> str:
    """Record the model's content digest in its metadata_props (replacing any earlier one); returns it."""
    digest = onnx_content_sha256(model)
    kept = [(p.key, p.value) for p in model.metadata_props if p.key != ONNX_CONTENT_KEY]
    del model.metadata_props[:]
    for key, value in [*kept, (ONNX_CONTENT_KEY, digest)]:
        model.metadata_props.add(key=key, value=value)
    return digest


# the element on its own line, as OpenVINO writes it: `\t\t\t<content_sha256 value="..." />\n`
_IR_DIGEST = re.compile(rb"[ \t]*<" + CONTENT_KEY.encode() + rb"\s+value=\"[^\"]*\"\s*/>[ \t]*(?:\r?\n)?")


def ir_content_sha256(xml: bytes, weights: bytes | os.PathLike) -> str:
    """sha256 over the IR's .xml without the digest's own rt_info element, then its .bin (bytes, or a path
    read in 1 MiB blocks: a .bin may be gigabytes, and memory stays bounded)."""
    h = hashlib.sha256(_IR_DIGEST.sub(b"", xml))
    h.update(b"\0")
    if isinstance(weights, bytes):
        h.update(weights)
    else:
        with open(weights, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
    return h.hexdigest()


def check_content(recorded: str, actual: str, where: str) -> None:
    """Raise ContentEditedError when a recorded digest differs from the content's (the recorded proof does not
    apply to it); a file that records none passes, and `content_row` marks it unverifiable."""
    if recorded and recorded != actual:
        raise ContentEditedError(f"{where} was edited after it was built: its content (sha256 {actual[:12]}) is not "
                                 f"what its recorded proof was computed on ({recorded[:12]}), so that proof does not "
                                 f"apply; rebuild it from its source (dirac-deploy fold / export / quantize)")


def content_row(recorded: str) -> tuple[str, str]:
    """The `inspect` check row for an artifact read without error: its recorded digest matched (a reader
    raises otherwise), or there was none, and then its provenance is the file's own claim."""
    if recorded:
        return ("content", f"sha256 {recorded[:12]}... matches the digest recorded when it was built: its recorded "
                           f"provenance and proofs describe these bytes")
    return ("content", "UNVERIFIABLE: no content digest recorded (written by another tool, or by a dirac-deploy "
                       "that recorded none): its provenance and recorded proofs are the file's own claims")

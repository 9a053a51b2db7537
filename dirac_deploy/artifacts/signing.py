"""Signed artifacts: a detached Ed25519 signature (`cryptography`) beside each artifact, `FILE.sig`.

What is signed is a small canonical record naming every file of the artifact and its sha256 (an IR: its .xml
and its .bin; anything else: the one file), so a signature covers exactly the bytes that were verified when
it was written. The key never goes into the artifact: the `.sig` holds the signature and the public key's
fingerprint, and the verifier brings the public key it trusts (`dirac-deploy verify FILE --key PUB`,
`serve --require-signature --key PUB`).

Why not OpenSSF `model-signing`: it signs one file or one whole folder, where an IR is two files in a folder
that holds other outputs too, and its key-based signing pulls in sigstore and its dependencies for what is
here an offline check; `cryptography` is already installed with the serving stack.

Keys are PEM files (`openssl genpkey -algorithm ed25519 -out key.pem`, `openssl pkey -in key.pem -pubout -out
key.pub`); an encrypted private key takes its passphrase from DIRAC_DEPLOY_KEY_PASSWORD.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
from collections.abc import Callable
from pathlib import Path

from .._optional import require
from ..errors import DiracDeployError
from ..fileio import atomic_write, sha256_file, staged_file

FORMAT = "dirac-deploy/signature"
VERSION = 1
MAX_SIG_BYTES = 64 << 10
MAX_KEY_BYTES = 64 << 10
PASSWORD_ENV = "DIRAC_DEPLOY_KEY_PASSWORD"


class SignatureError(DiracDeployError):
    """A missing, malformed or failing signature, or an unusable key."""


def signature_path(path: str | os.PathLike) -> Path:
    """Where an artifact's detached signature lives: the file's name with `.sig` appended."""
    path = Path(path)
    return path.with_name(path.name + ".sig")


def artifact_files(path: str | os.PathLike) -> list[Path]:
    """The files one artifact is made of: an OpenVINO IR's .xml and .bin, else the file itself."""
    path = Path(path)
    return [path, path.with_suffix(".bin")] if path.suffix == ".xml" else [path]


def _record(files: list[Path], read: Callable[[Path], Path]) -> dict:
    return {"format": FORMAT, "version": VERSION, "algorithm": "ed25519",
            "files": [{"name": f.name, "sha256": sha256_file(read(f))} for f in files]}


def _message(record: dict) -> bytes:
    """The signed bytes: the record without its signature, canonical JSON."""
    fields = {k: v for k, v in record.items() if k not in ("signature", "public_key_sha256")}
    return json.dumps(fields, sort_keys=True, separators=(",", ":")).encode()


def _read_key(path: str | os.PathLike, what: str) -> bytes:
    path = Path(path)
    if not path.is_file():
        raise SignatureError(f"{what} {path}: no such file")
    if path.stat().st_size > MAX_KEY_BYTES:
        raise SignatureError(f"{what} {path} is over {MAX_KEY_BYTES >> 10} KiB; not a PEM key")
    return path.read_bytes()


def load_private_key(path: str | os.PathLike):
    """An Ed25519 private key from a PEM file (its passphrase, if any, from DIRAC_DEPLOY_KEY_PASSWORD)."""
    serialization = require("cryptography.hazmat.primitives.serialization")
    ed25519 = require("cryptography.hazmat.primitives.asymmetric.ed25519")
    password = os.environ.get(PASSWORD_ENV)
    try:
        key = serialization.load_pem_private_key(_read_key(path, "signing key"),
                                                 password=password.encode() if password else None)
    except TypeError:
        raise SignatureError(f"signing key {path} is encrypted: set {PASSWORD_ENV} to its passphrase") from None
    except ValueError as e:
        raise SignatureError(f"signing key {path} is not a readable PEM private key ({str(e)[:120]})") from None
    if not isinstance(key, ed25519.Ed25519PrivateKey):
        raise SignatureError(f"signing key {path} is a {type(key).__name__}, not an Ed25519 key (make one with: "
                             f"openssl genpkey -algorithm ed25519 -out key.pem)")
    return key


def load_public_key(path: str | os.PathLike):
    """An Ed25519 public key from a PEM file (`openssl pkey -in key.pem -pubout`), or from the private key."""
    serialization = require("cryptography.hazmat.primitives.serialization")
    ed25519 = require("cryptography.hazmat.primitives.asymmetric.ed25519")
    data = _read_key(path, "key")
    try:
        key = serialization.load_pem_public_key(data)
    except ValueError:
        key = load_private_key(path).public_key()
    if not isinstance(key, ed25519.Ed25519PublicKey):
        raise SignatureError(f"key {path} is a {type(key).__name__}, not an Ed25519 public key")
    return key


def fingerprint(public_key) -> str:
    serialization = require("cryptography.hazmat.primitives.serialization")
    raw = public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()


def signature_bytes(path: str | os.PathLike, private_key, read: Callable[[Path], Path] = lambda p: p) -> bytes:
    """The `.sig` file's content for the artifact at `path`, signed with `private_key`. `read(target)` gives the
    file that holds a target's bytes now (a staged temp file inside an output transaction)."""
    record = _record(artifact_files(path), read)
    record["signature"] = base64.b64encode(private_key.sign(_message(record))).decode()
    record["public_key_sha256"] = fingerprint(private_key.public_key())
    return (json.dumps(record, indent=1) + "\n").encode()


def verify_signature(path: str | os.PathLike, public_key) -> dict:
    """Check the artifact at `path` against its `.sig` with `public_key`; returns the signed record.

    Raises:
        SignatureError: no signature, a malformed one, another key's, or files that changed since signing.
    """
    path = Path(path)
    sig = signature_path(path)
    if not sig.is_file():
        raise SignatureError(f"{path} is not signed: no {sig.name} beside it (sign it with `sign_key` when it is "
                             f"written)")
    if sig.stat().st_size > MAX_SIG_BYTES:
        raise SignatureError(f"{sig} is over {MAX_SIG_BYTES >> 10} KiB; not a signature")
    try:
        record = json.loads(sig.read_bytes())
        signature = base64.b64decode(record["signature"], validate=True)
        if record.get("format") != FORMAT or record.get("version") != VERSION or not isinstance(record["files"], list):
            raise ValueError("not a dirac-deploy signature")
    except (ValueError, KeyError, TypeError) as e:
        raise SignatureError(f"{sig} is a damaged signature ({str(e)[:120]})") from None
    if record.get("public_key_sha256") != fingerprint(public_key):
        raise SignatureError(f"{path} was signed with another key (fingerprint "
                             f"{str(record.get('public_key_sha256'))[:12]}, the key given is "
                             f"{fingerprint(public_key)[:12]})")
    try:
        public_key.verify(signature, _message(record))
    except Exception:  # cryptography's InvalidSignature
        raise SignatureError(f"{sig}: the signature does not verify (the record was altered)") from None
    expected = {f.name for f in artifact_files(path)}
    if {str(f.get("name")) for f in record["files"]} != expected:
        raise SignatureError(f"{sig} signs {[f.get('name') for f in record['files']]}, not {sorted(expected)}")
    for entry in record["files"]:
        actual = sha256_file(path.with_name(entry["name"]))
        if actual != entry["sha256"]:
            raise SignatureError(f"{path.with_name(entry['name'])} changed after it was signed (sha256 {actual[:12]}, "
                                 f"signed {str(entry['sha256'])[:12]})")
    return record


def sign_outputs(written: list[Path], key_path: str | os.PathLike) -> list[Path]:
    """Write `FILE.sig` beside every artifact among `written` (an IR's .bin is covered by its .xml's signature;
    reports, plots and configs are not artifacts), through the current output transaction when there is one,
    so the artifacts and their signatures land together. Returns the signatures written."""
    key = load_private_key(key_path)
    skip = (".bin", ".sig", ".json", ".png", ".pbtxt")
    out = []
    for path in written:
        path = Path(path)
        if path.suffix in skip:
            continue
        out.append(atomic_write(signature_path(path), _writer(signature_bytes(path, key, read=staged_file))))
    return out


def _writer(data: bytes) -> Callable[[Path], None]:
    def write(tmp: Path) -> None:
        tmp.write_bytes(data)
    return write

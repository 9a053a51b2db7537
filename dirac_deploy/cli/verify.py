"""`dirac-deploy verify`."""

from __future__ import annotations

from pathlib import Path

import click
from rich.text import Text

from .render import console


@click.command()
@click.argument("files", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--key", "public_key", type=click.Path(path_type=Path), required=True,
              help="The Ed25519 public key (PEM) to trust, e.g. from: openssl pkey -in key.pem -pubout -out key.pub")
def verify(files, public_key):
    """Check each artifact's detached signature (FILE.sig, written with --sign-key) against --key.

    A signature covers every file of the artifact (an IR's .xml and .bin) by its sha256; any file changed since
    signing, another key's signature or a missing one fails with one line and exit status 1. The artifact's own
    checks (content digest, audit, parity probe) run when it is read: `dirac-deploy inspect FILE`.
    """
    from ..artifacts.signing import fingerprint, load_public_key, verify_signature

    key = load_public_key(public_key)
    for path in files:
        record = verify_signature(path, key)
        names = ", ".join(f["name"] for f in record["files"])
        console().print(Text(f"{path}: signature valid ({names}; key sha256 {fingerprint(key)[:12]})"))

"""artifacts/signing.py: detached Ed25519 signatures written with --sign-key, checked by `verify` and by
`serve --require-signature`; a tampered, unsigned or other-key artifact is refused in one line."""

from __future__ import annotations

import subprocess
import sys

import pytest
from click.testing import CliRunner

from dirac_deploy import data
from dirac_deploy.artifacts.signing import SignatureError, load_public_key, signature_path, verify_signature
from dirac_deploy.cli import main

serialization = pytest.importorskip("cryptography.hazmat.primitives.serialization")
ed25519 = pytest.importorskip("cryptography.hazmat.primitives.asymmetric.ed25519")


def _keypair(folder, name):
    key = ed25519.Ed25519PrivateKey.generate()
    private = folder / f"{name}.pem"
    public = folder / f"{name}.pub"
    private.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                          serialization.NoEncryption()))
    public.write_bytes(key.public_key().public_bytes(serialization.Encoding.PEM,
                                                     serialization.PublicFormat.SubjectPublicKeyInfo))
    return private, public, key


@pytest.fixture(scope="module")
def signed(tmp_path_factory):
    d = tmp_path_factory.mktemp("signed")
    private, public, key = _keypair(d, "key")
    res = CliRunner().invoke(main, ["fold", str(data.embedded_checkpoint()), "-o", str(d / "p.pth"), "--sign-key",
                                    str(private)])
    assert res.exit_code == 0 and "signed" in res.output, res.output
    res = CliRunner().invoke(main, ["export", str(d / "p.pth"), "--onnx", str(d / "m.onnx"), "--sign-key",
                                    str(private)])
    assert res.exit_code == 0, res.output
    return d, private, public, key


def test_every_artifact_written_gets_a_signature_that_verifies(signed):
    d, _, public, key = signed
    for name in ("p.pth", "m.onnx"):
        assert signature_path(d / name).is_file()
        record = verify_signature(d / name, load_public_key(public))
        assert [f["name"] for f in record["files"]] == [name]
    res = CliRunner().invoke(main, ["verify", str(d / "p.pth"), str(d / "m.onnx"), "--key", str(public)])
    assert res.exit_code == 0 and res.output.count("signature valid") == 2, res.output
    raw = key.private_bytes(serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption())
    for f in d.iterdir():  # the private key is never stored beside or inside an artifact
        if f.suffix != ".pem":
            assert raw not in f.read_bytes(), f


@pytest.mark.hostile
def test_tampered_unsigned_and_other_key_artifacts_are_refused(signed, tmp_path):
    d, _, public, _ = signed
    other_private, other_public, _ = _keypair(tmp_path, "other")
    changed = tmp_path / "m.onnx"
    changed.write_bytes((d / "m.onnx").read_bytes() + b"\0")
    signature_path(changed).write_bytes(signature_path(d / "m.onnx").read_bytes())
    unsigned = tmp_path / "u.onnx"
    unsigned.write_bytes((d / "m.onnx").read_bytes())
    forged = tmp_path / "f.onnx"
    forged.write_bytes((d / "m.onnx").read_bytes())
    signature_path(forged).write_text(signature_path(d / "m.onnx").read_text().replace('"m.onnx"', '"f.onnx"'))
    cases = [(changed, public, "changed after it was signed"), (unsigned, public, "is not signed"),
             (forged, public, "does not verify"), (d / "m.onnx", other_public, "signed with another key")]
    for path, key, fragment in cases:
        res = CliRunner().invoke(main, ["verify", str(path), "--key", str(key)])
        assert res.exit_code == 1 and fragment in res.output and len(res.output.strip().splitlines()) == 1, (
            path, res.output)
    with pytest.raises(SignatureError, match="not an Ed25519"):
        ec = pytest.importorskip("cryptography.hazmat.primitives.asymmetric.ec")
        bad = tmp_path / "ec.pem"
        bad.write_bytes(ec.generate_private_key(ec.SECP256R1()).private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
        from dirac_deploy.artifacts.signing import load_private_key

        load_private_key(bad)
    res = CliRunner().invoke(main, ["fold", str(data.embedded_checkpoint()), "-o", str(tmp_path / "x.pth"),
                                    "--sign-key", str(other_public)])  # a public key cannot sign: nothing written
    assert res.exit_code == 1 and not (tmp_path / "x.pth").exists(), res.output
    del other_private


def test_quantize_signs_both_files_of_an_ir(signed, tmp_path):
    pytest.importorskip("openvino")
    d, private, public, _ = signed
    xml = tmp_path / "q.xml"
    res = CliRunner().invoke(main, ["quantize", str(d / "p.pth"), "-o", str(xml), "--min-speedup", "0",
                                    "--sign-key", str(private)])
    assert res.exit_code == 0, res.output
    record = verify_signature(xml, load_public_key(public))
    assert [f["name"] for f in record["files"]] == ["q.xml", "q.bin"]
    with open(tmp_path / "q.bin", "ab") as f:
        f.write(b"\0")
    with pytest.raises(SignatureError, match="q.bin changed after it was signed"):
        verify_signature(xml, load_public_key(public))


@pytest.mark.hostile
def test_serve_require_signature_refuses_unsigned_or_other_key_models_at_start(signed, tmp_path):
    from dirac_deploy.serve_files import load_models

    d, _, public, _ = signed
    _, other_public, _ = _keypair(tmp_path, "other")
    models = load_models([str(d / "m.onnx")], None, 1, signature_key=public)
    assert list(models) == ["m"]
    models["m"].instances.close()
    unsigned = tmp_path / "u.onnx"
    unsigned.write_bytes((d / "m.onnx").read_bytes())
    for args, fragment in (([str(unsigned), "--key", str(public)], "is not signed"),
                           ([str(d / "m.onnx"), "--key", str(other_public)], "signed with another key")):
        proc = subprocess.run([sys.executable, "-m", "dirac_deploy.cli", "serve", *args, "--require-signature",
                               "--port", "0"], capture_output=True, text=True, timeout=120)
        lines = proc.stderr.strip().splitlines()
        assert proc.returncode == 1 and len(lines) == 1 and fragment in lines[0], proc.stderr
        assert "serving" not in proc.stdout
    proc = subprocess.run([sys.executable, "-m", "dirac_deploy.cli", "serve", str(d / "m.onnx"), "--key", str(public),
                           "--port", "0"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "go together" in proc.stderr

"""opener: one opener for every model file, typed artifacts with one provenance, and ONNX files re-checked
against their parity probe."""

import numpy as np
import onnx
import onnx.numpy_helper
import pytest
import torch

from dirac_deploy import LoadOptions, fold_checkpoint
from dirac_deploy.artifacts.base import Artifact
from dirac_deploy.artifacts.digest import stamp_onnx
from dirac_deploy.artifacts.onnx import OnnxArtifact, read_onnx
from dirac_deploy.artifacts.plain import PlainArtifact
from dirac_deploy.errors import CheckpointError, EquivalenceError, ExportError
from dirac_deploy.export.from_file import export_file
from dirac_deploy.opener import open_artifact as load_model

import reference

PROBE_KEY = "dirac_deploy.parity_probe"


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("pipeline")
    torch.save(reference.as_flat_params(reference.define_params("cifar", 10, seed=3)), d / "ckpt.pt7")
    fold_checkpoint(d / "ckpt.pt7", d / "plain.pth")
    export_file(d / "plain.pth", d / "m.onnx")
    return d


def test_checkpoint_plain_and_onnx_open_to_the_same_contract(files):
    ck, pl, ox = (load_model(files / n) for n in ("ckpt.pt7", "plain.pth", "m.onnx"))
    assert ck.origin == "checkpoint" and pl.origin == "plain file"
    assert ck.kind.key == pl.kind.key == "torch" and ox.kind.key == "onnx"
    assert all(isinstance(a, Artifact) for a in (ck, pl, ox))  # one shape: kind, model, provenance, check
    assert ck.model is ck.plain and ox.model is not None
    assert ck.input_shape == pl.input_shape == ox.input_shape == (3, 32, 32)
    assert ck.num_classes == pl.num_classes == ox.num_classes == 10
    assert ck.name == pl.name == ox.name == "DiracNet-10-1 (CIFAR stem, 10 classes)"
    assert isinstance(ck, PlainArtifact) and isinstance(pl, PlainArtifact) and isinstance(ox, OnnxArtifact)
    assert ck.unfolded is not None and pl.unfolded is None
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.allclose(ck.plain(x), pl.plain(x), atol=1e-5)
    plain_proof, onnx_proof = pl.check(), ox.check()  # each against its own reference
    assert plain_proof.ok and plain_proof.reference == "chain in float64"
    assert onnx_proof.ok and onnx_proof.reference == "logits recorded at export"
    assert ck.fold.proof.ok and len(ck.provenance.source_sha256) == 64
    assert ck.provenance.source_sha256 == pl.provenance.source_sha256 == ox.provenance.source_sha256
    assert ck.provenance.mean == pl.provenance.mean == ox.provenance.mean and ox.provenance.graph == "folded"


def test_input_size_option_reaches_a_plain_file(files):
    assert load_model(files / "plain.pth", LoadOptions(input_size=48)).input_shape == (3, 48, 48)


def test_onnx_carries_a_probe_that_reverifies_without_torch(files, tmp_path):
    art = read_onnx(files / "m.onnx")
    x, ref = art.probe()
    assert x.shape == (2, 3, 32, 32) and ref.shape == (2, 10)
    report = export_file(files / "m.onnx", tmp_path / "copy.onnx")  # an ONNX input is re-checked, then copied
    assert report.onnx.folded.parity[0].ok and (tmp_path / "copy.onnx").exists()


def test_a_tampered_onnx_fails_its_probe_and_nothing_is_written(files, tmp_path):
    model = onnx.load(files / "m.onnx")
    init = next(t for t in model.graph.initializer if onnx.numpy_helper.to_array(t).ndim == 4)
    w = onnx.numpy_helper.to_array(init).copy()
    w[0, 0, 1, 1] += 5.0  # a weight edited after export
    init.CopyFrom(onnx.numpy_helper.from_array(w, init.name))
    stamp_onnx(model)  # with the digest recomputed, as a deliberate attacker would: the probe must catch it
    onnx.save(model, tmp_path / "bad.onnx")
    with pytest.raises(EquivalenceError, match="does not reproduce the logits recorded at export"):
        export_file(tmp_path / "bad.onnx", tmp_path / "out.onnx")
    assert not (tmp_path / "out.onnx").exists()


def test_an_onnx_without_a_probe_is_not_passed_as_verified(files, tmp_path):
    model = onnx.load(files / "m.onnx")
    kept = [p for p in model.metadata_props if p.key != PROBE_KEY]
    del model.metadata_props[:]
    model.metadata_props.extend(kept)
    stamp_onnx(model)
    onnx.save(model, tmp_path / "noprobe.onnx")
    with pytest.raises(ExportError, match="no parity probe"):
        export_file(tmp_path / "noprobe.onnx", tmp_path / "out.onnx")


def test_a_file_that_is_neither_says_so(tmp_path):
    (tmp_path / "x.bin").write_bytes(b"\x01\x02 not a model")
    with pytest.raises(CheckpointError, match="not a PyTorch checkpoint or an ONNX model"):
        load_model(tmp_path / "x.bin")


def test_probe_inputs_are_reproducible_without_torch():
    from dirac_deploy.artifacts.onnx import probe_inputs

    a, b = probe_inputs(2, (3, 8, 8), 5), probe_inputs(2, (3, 8, 8), 5)
    assert a.dtype == np.float32 and np.array_equal(a, b) and not np.array_equal(a, probe_inputs(2, (3, 8, 8), 6))

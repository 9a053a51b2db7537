"""artifacts.provenance: one typed provenance, read and written by its three codecs (plain-file meta, ONNX
metadata_props, OpenVINO rt_info) without loss, and damaged fields named."""

import pytest

from dirac_deploy.artifacts.provenance import PREFIX, Provenance, floats_from_text, metadata_value
from dirac_deploy.errors import CheckpointError

FULL = Provenance(source_file="ckpt.pt7", source_sha256="ab" * 32, layout="v2-flat-params",
                  architecture="DiracNet-10-1", spec={"stem": "cifar", "widths": [16, 32, 64]}, input_size=32,
                  in_channels=3, num_classes=10, mean=(0.5, 0.4, 0.3), std=(0.2, 0.2, 0.25),
                  origins={"normalization": "checkpoint", "input_size": "given"},
                  fold_proof={"max_abs_error": 1e-6, "max_rel_error": 2e-7, "top1_agreement": 1.0}, fold_form=None,
                  tool_version="0.1.0", torch_version="2.13.0")


def test_the_plain_file_form_round_trips():
    back = Provenance.from_plain_meta(FULL.to_plain_meta(), channels=3)
    assert back == FULL


def test_the_onnx_form_keeps_what_a_loader_needs_and_the_check_data_beside_it():
    props = FULL.replace(graph="quantized-int8", precision="int8", method="identity").to_onnx_metadata(
        probe='{"seed": 0}', probe_rtol=0.05, low_precision_proof={"ok": True}, int8_types="s8s8")
    assert all(k.startswith(PREFIX) for k in props) and all(isinstance(v, str) for v in props.values())
    back = Provenance.from_onnx_metadata(props)
    for field in ("source_sha256", "layout", "architecture", "input_size", "mean", "std", "origins"):
        assert getattr(back, field) == getattr(FULL, field), field
    assert (back.graph, back.precision, back.method) == ("quantized-int8", "int8", "identity")
    assert back.fold_proof == {"max_abs_error": 1e-6, "max_rel_error": 2e-7}
    assert metadata_value(props, "parity_probe") == '{"seed": 0}' and metadata_value(props, "probe_rtol") == "0.05"


def test_the_rt_info_form_is_the_onnx_form_under_its_own_keys():
    info = FULL.to_rt_info(probe="p")
    assert "source_sha256" in info and not any(k.startswith(PREFIX) for k in info)
    assert Provenance.from_rt_info(lambda key: info.get(key, "")) == Provenance.from_onnx_metadata(
        FULL.to_onnx_metadata(probe="p"))


def test_a_foreign_file_has_an_empty_provenance():
    assert Provenance.from_onnx_metadata({"author": "someone"}) == Provenance()
    assert Provenance().to_onnx_metadata() == {PREFIX + "mean": "[]", PREFIX + "std": "[]"}


@pytest.mark.parametrize("meta, fragment", [
    ([], "'meta' is a list"),
    ({"architecture": "DiracNet"}, "meta['architecture'] is a str"),
    ({"input_size": "32"}, "input_size '32'"),
    ({"mean": [0.5, 0.5]}, "meta['mean']"),
    ({"std": [1.0, 0.0, 1.0]}, "meta['std']"),
    ({"mean": [0.5, float("nan"), 0.5]}, "meta['mean']"),
])
def test_damaged_plain_meta_is_one_error_naming_the_field(meta, fragment):
    with pytest.raises(CheckpointError, match=fragment.replace("[", r"\[").replace("(", r"\(")):
        Provenance.from_plain_meta(meta, "x.pth", channels=3)


def test_recorded_number_lists_are_read_strictly():
    assert floats_from_text("[1, 2.5]") == (1.0, 2.5)
    for bad in ("", "[]", "[true]", '["a"]', "{", "[NaN]", "x" * 20_000):
        assert floats_from_text(bad) is None, bad

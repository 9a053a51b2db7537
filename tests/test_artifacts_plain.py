"""plainfile (and the pipeline's check that a chain runs at its input size): a damaged or edited plain.pth is
one line before anything is exported."""

from __future__ import annotations

import copy

import pytest
import torch
from click.testing import CliRunner

from dirac_deploy import data
from dirac_deploy.artifacts.plain import content_sha256
from dirac_deploy.cli import main


@pytest.fixture(scope="module")
def payload(tmp_path_factory):
    path = tmp_path_factory.mktemp("plain") / "p.pth"
    assert CliRunner().invoke(main, ["fold", str(data.embedded_checkpoint()), "-o", str(path)]).exit_code == 0
    return torch.load(path, weights_only=True)


def _edits(payload):
    small = copy.deepcopy(payload)
    small["meta"]["input_size"] = 3
    pool = copy.deepcopy(payload)
    next(la for la in pool["layers"] if la["kind"] == "maxpool")["args"]["kernel_size"] = 0
    slope = copy.deepcopy(payload)
    i = next(i for i, la in enumerate(slope["layers"]) if la["kind"] == "relu")
    slope["layers"][i] = {"kind": "leaky_relu", "name": slope["layers"][i]["name"],
                          "args": {"negative_slope": "0.1"}}
    ints, cplx = copy.deepcopy(payload), copy.deepcopy(payload)
    ints["state_dict"]["stem_conv.weight"] = ints["state_dict"]["stem_conv.weight"].to(torch.int32)
    cplx["state_dict"]["stem_conv.weight"] = cplx["state_dict"]["stem_conv.weight"].to(torch.complex64)
    # the meta edit restamped, as a deliberate attacker would: the run check behind the digest must hold
    small["meta"]["content_sha256"] = content_sha256(small["layers"], small["meta"], small["state_dict"])
    scaled = copy.deepcopy(payload)
    scaled["state_dict"]["stem_conv.weight"] = scaled["state_dict"]["stem_conv.weight"] * 1.5
    return {"small": (small, "does not run on a 3x3x3 input"), "pool": (pool, "kernel_size = 0"),
            "slope": (slope, "negative_slope"), "ints": (ints, "torch.int32"), "cplx": (cplx, "torch.complex64"),
            "scaled": (scaled, "was edited after it was built")}


def test_edited_plain_files_are_one_line_before_export(payload, tmp_path):
    for name, (obj, needle) in _edits(payload).items():
        path = tmp_path / f"{name}.pth"
        torch.save(obj, path)
        res = CliRunner().invoke(main, ["export", str(path), "--onnx", str(tmp_path / f"{name}.onnx")])
        assert res.exit_code == 1 and needle in res.output, (name, res.output)
        assert len(res.output.strip().splitlines()) == 1, (name, res.output)
        assert not (tmp_path / f"{name}.onnx").exists()


class _OffRunner:
    """A runner that returns the chain's logits scaled by `factor` (a runtime that gets the chain wrong)."""

    engine = "torch"

    def __init__(self, module, factor):
        self.module, self.factor = module, factor

    def run(self, x):
        with torch.no_grad():
            return (self.module(torch.from_numpy(x)) * self.factor).numpy()


def test_plain_artifact_check_proves_a_runner_against_the_chain_in_float64(tmp_path):
    from dirac_deploy.errors import EquivalenceError
    from dirac_deploy.opener import open_artifact

    art = open_artifact(data.embedded_checkpoint())
    proof = art.check(_OffRunner(art.plain, 1.0))
    assert proof.ok and proof.max_rel_error < 1e-5 and proof.reference == "chain in float64"
    with pytest.raises(EquivalenceError, match="does not reproduce its chain"):
        art.check(_OffRunner(art.plain, 1.001))  # 0.1% off the logits: beyond the fp32 tolerance

"""export.pte and artifacts.pte: the folded chain as an ExecuTorch program, fully delegated to XNNPACK, run by
ExecuTorch's own runtime before it is written, read back with its record and digest, inspected and served.
Skipped where the [executorch] extra is not installed (`make test-edge` installs it and requires it)."""

import asyncio
import os

import httpx
import numpy as np
import pytest
import torch
from click.testing import CliRunner
from torch import nn

from dirac_deploy import data
from dirac_deploy._optional import available
from dirac_deploy.artifacts.digest import ContentEditedError
from dirac_deploy.artifacts.provenance import Provenance
from dirac_deploy.cli import main
from dirac_deploy.errors import CheckpointError, ExportError

if os.environ.get("DIRAC_REQUIRE_EDGE") == "1" and not available("executorch"):  # `make test-edge` installed it
    raise RuntimeError("DIRAC_REQUIRE_EDGE=1 but executorch is not importable: run `make test-edge`, which installs it")
needs_executorch = pytest.mark.skipif(not available("executorch"),
                                      reason="executorch not installed (pip install '.[executorch]', or make test-edge)")


@pytest.fixture(scope="module")
def program(tmp_path_factory):
    path = tmp_path_factory.mktemp("pte") / "digits.pte"
    res = CliRunner().invoke(main, ["export", str(data.embedded_checkpoint()), "--pte", str(path)])
    assert res.exit_code == 0, res.output
    return path, res.output


@pytest.mark.edge
@needs_executorch
def test_export_pte_writes_a_fully_delegated_program_proven_in_its_runtime(program):
    from dirac_deploy.artifacts.pte import read_pte
    from dirac_deploy.opener import open_artifact

    path, output = program
    assert "XNNPACK runs 19 ops, all of them" in output and "ExecuTorch parity" in output
    art = open_artifact(path)
    assert art.kind.key == "pte" and art.input_shape == (3, 32, 32) and art.num_classes == 10 and art.batch == 1
    assert art.delegation == {"delegated": 19, "not_delegated": {}}
    assert art.provenance.source_sha256 == read_pte(path).provenance.source_sha256 != ""
    assert art.provenance.mean is not None  # the preprocessing travels with the program
    proof = art.check()
    assert proof.ok and proof.reference == "logits recorded at export"
    # the program agrees with the PyTorch chain on images the probe never saw
    chain = open_artifact(data.embedded_checkpoint())
    x = np.random.default_rng(7).standard_normal((3, 3, 32, 32)).astype(np.float32)
    from dirac_deploy.runtimes import build

    got = build("executorch", art.model).run(x)
    with torch.no_grad():
        ref = chain.plain(torch.from_numpy(x)).numpy()
    assert np.abs(got - ref).max() <= 1e-4 * np.abs(ref).max()


@pytest.mark.edge
@pytest.mark.hostile
@needs_executorch
def test_an_edited_program_is_refused_before_executorch_sees_it(program, tmp_path):
    from dirac_deploy.opener import open_artifact

    path, _ = program
    raw = path.read_bytes()
    weights = bytearray(raw)
    weights[len(raw) // 2] ^= 0x40  # a byte inside the program (weights or code), not the record
    (tmp_path / "w.pte").write_bytes(bytes(weights))
    with pytest.raises(ContentEditedError, match="edited after it was built"):
        open_artifact(tmp_path / "w.pte")
    forged = raw.replace(b'"dirac_deploy.architecture": "DiracNet', b'"dirac_deploy.architecture": "ResidNet')
    assert forged != raw and len(forged) == len(raw)
    (tmp_path / "f.pte").write_bytes(forged)
    with pytest.raises(ContentEditedError):
        open_artifact(tmp_path / "f.pte")
    bare = raw.replace(b'{"format": "dirac-deploy/pte"', b'{"format": "something-else"')
    (tmp_path / "b.pte").write_bytes(bare)
    with pytest.raises(CheckpointError, match="carries no dirac-deploy record"):
        open_artifact(tmp_path / "b.pte")


class _Mean(nn.Module):
    def forward(self, x):
        return x.mean((2, 3))  # XNNPACK does not take a mean without keepdim: it splits the graph


@pytest.mark.edge
@needs_executorch
def test_a_partly_delegated_program_is_refused_unless_asked():
    from dirac_deploy.export.pte import build_pte

    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), _Mean(), nn.Linear(8, 4)).eval()
    with pytest.raises(ExportError, match=r"leaves 1 to ExecuTorch's portable kernels \(aten_mean_dim x1\)"):
        build_pte(net, (3, 8, 8), 4, Provenance())
    built = build_pte(net, (3, 8, 8), 4, Provenance(), allow_partial=True)
    assert built.not_delegated == {"aten_mean_dim": 1} and built.parity is not None and built.parity.ok


@pytest.mark.edge
@needs_executorch
def test_inspect_and_serve_read_the_program(program):
    from dirac_deploy.serve.app import create_app
    from dirac_deploy.serve_files import load_models

    path, _ = program
    res = CliRunner().invoke(main, ["inspect", str(path)])
    assert res.exit_code == 0 and "XNNPACK runs 19 ops, all of them" in res.output and "parity probe" in res.output
    models = load_models([str(path)], None, 1, instances=2)
    served = models["digits"]
    assert served.runtime == "executorch" and served.info["verified"] == "parity probe in ExecuTorch's runtime"
    x = np.random.default_rng(1).standard_normal((3, 3, 32, 32)).astype(np.float32)
    body = {"inputs": [{"name": "input", "shape": list(x.shape), "datatype": "FP32", "data": x.ravel().tolist()}]}

    async def go():
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=create_app(models)), base_url="http://t") as c:
            return await asyncio.gather(*(c.post("/v2/models/digits/infer", json=body) for _ in range(4)))

    answers = asyncio.run(go())
    assert all(r.status_code == 200 for r in answers)
    logits = [np.array(r.json()["outputs"][0]["data"]).reshape(3, 10) for r in answers]
    assert all(np.array_equal(logits[0], other) for other in logits[1:])  # two instances, one answer
    from dirac_deploy.opener import open_artifact

    with torch.no_grad():
        ref = open_artifact(data.embedded_checkpoint()).plain(torch.from_numpy(x)).numpy()
    assert (logits[0].argmax(1) == ref.argmax(1)).all()


def test_export_pte_without_executorch_says_how_to_install(tmp_path, monkeypatch):
    """Where the extra is missing, `--pte` is one line naming the install, before any fold (runs everywhere)."""
    import dirac_deploy._optional as optional

    real = optional.require

    def missing(module):
        if module.split(".")[0] == "executorch":
            raise optional.MissingDependencyError(f"{module} is not available; install it with: "
                                                  f"{optional.install_hint(module)}")
        return real(module)

    monkeypatch.setattr("dirac_deploy.export.targets.require", missing)
    res = CliRunner().invoke(main, ["export", str(data.embedded_checkpoint()), "--pte", str(tmp_path / "m.pte")])
    assert res.exit_code == 1 and "[executorch]" in res.output and "Traceback" not in res.output
    assert list(tmp_path.iterdir()) == []


@pytest.mark.edge
@pytest.mark.hostile
@needs_executorch
def test_a_program_is_not_a_source_for_quantize_or_export(program, tmp_path):
    path, _ = program
    for args in (["quantize", str(path), "-o", str(tmp_path / "q.onnx"), "--calib", "random:8"],
                 ["export", str(path), "--onnx", str(tmp_path / "m.onnx")]):
        res = CliRunner().invoke(main, args)
        assert res.exit_code == 1 and "is an ExecuTorch program, already a deployed artifact" in res.output, res.output
        assert "Traceback" not in res.output and list(tmp_path.iterdir()) == []


@pytest.mark.edge
@needs_executorch
def test_bench_times_the_chain_as_an_executorch_program(tmp_path):
    import json

    out = tmp_path / "b.json"
    res = CliRunner().invoke(main, ["bench", str(data.embedded_checkpoint()), "--backends", "executorch", "--batch",
                                    "1", "--rounds", "2", "--iters", "3", "--max-seconds", "0.5", "--json", str(out),
                                    "--no-plot"])
    assert res.exit_code == 0, res.output
    records = {r["variant"]: r for r in json.loads(out.read_text())["records"] if r["backend"] == "executorch"}
    assert records["folded"]["status"] == "ok" and records["folded"]["latency_ms"]["p50"] > 0
    assert records["unfolded-as-trained"]["status"] == "ok"  # the DiracNet as trained, lowered as it is


@pytest.mark.edge
@needs_executorch
@pytest.mark.parametrize("method", ["identity", "naive"])
def test_quantize_writes_an_int8_program_proven_on_held_out_digits(tmp_path, method):
    """The embedded digits model as an int8 ExecuTorch program: proven on its held-out split (accuracy and
    agreement gates as for every target), timed against the fp32 program (not gated here: CI's cores are
    shared), read back and re-checked in ExecuTorch's runtime."""
    import json

    from dirac_deploy.opener import open_artifact

    out, report = tmp_path / f"q-{method}.pte", tmp_path / "r.json"
    res = CliRunner().invoke(main, ["quantize", str(data.embedded_checkpoint()), "-o", str(out), "--method", method,
                                    "--min-speedup", "0", "--json", str(report)])
    assert res.exit_code == 0, res.output
    doc = json.loads(report.read_text())
    proof = doc["proof"]
    assert doc["target"] == "executorch" and proof["agreement"] >= 0.99 and proof["images"] == 360
    assert proof["runtime_ops"]["conv"] == {"int8": 7, "fp32": 0}  # every conv quantized, all inside XNNPACK
    assert proof["speed"]["reference"] == "the fp32 program on ExecuTorch" and proof["speed"]["rows"]
    art = open_artifact(out)
    assert art.kind.key == "pte" and art.provenance.precision == "int8" and art.provenance.method == method
    assert art.delegation["not_delegated"] == {} and art.check().ok


@pytest.mark.edge
@pytest.mark.hostile
@needs_executorch
def test_quantize_to_a_program_needs_the_pytorch_chain(program, tmp_path):
    from dirac_deploy.export.from_file import export_file

    onnx_path = tmp_path / "m.onnx"
    export_file(data.embedded_checkpoint(), onnx_path)
    res = CliRunner().invoke(main, ["quantize", str(onnx_path), "-o", str(tmp_path / "q.pte"), "--min-speedup", "0"])
    assert res.exit_code == 1 and "lowered from the PyTorch chain" in res.output and "Traceback" not in res.output
    assert not (tmp_path / "q.pte").exists()


@pytest.mark.edge
@needs_executorch
def test_a_checkpoint_is_served_on_executorch_through_its_verified_program():
    from dirac_deploy.serve_files import load_models

    served = load_models([f"{data.embedded_checkpoint()}@executorch"], None, 1)["digits_diracnet"]
    assert served.runtime == "executorch" and served.info["verified"] == "parity probe in ExecuTorch's runtime"
    x = np.random.default_rng(3).standard_normal((2, 3, 32, 32)).astype(np.float32)
    assert served.infer(x).shape == (2, 10)


@pytest.mark.edge
@pytest.mark.slow
@needs_executorch
def test_the_identity_int8_program_of_a_diracnet18_loads_in_executorch():
    """ImageNet DiracNet-18 (at 64x64 to keep it short): XNNPACK refused the channel-padded identity of its
    widening convs when the program loaded (xnn_status_unsupported_parameter); the identity form for ExecuTorch
    leaves widening convs plain, and the program loads, runs and keeps the chain's top-1 on most images."""
    from dirac_deploy.folding.fold import fold
    from dirac_deploy.models.dirac import DiracNet
    from dirac_deploy.quantize.executorch import program
    from dirac_deploy.runtimes import build
    from dirac_deploy.spec import imagenet_spec

    torch.manual_seed(0)
    plain = fold(DiracNet(imagenet_spec(18)).eval()).plain
    x = np.random.default_rng(0).standard_normal((8, 3, 64, 64)).astype(np.float32)
    prog = program(plain, (3, 64, 64), x, form="identity")
    assert prog.not_delegated == {} and prog.runtime_ops["conv"]["int8"] == 17
    got = build("executorch", prog).run(x)
    with torch.no_grad():
        ref = plain(torch.from_numpy(x)).numpy()
    assert got.shape == ref.shape and np.isfinite(got).all()

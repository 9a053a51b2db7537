"""export.program, artifacts.program and their two stacks: the folded chain as an ExecuTorch program (.pte) and as
a LiteRT program (.tflite), fully delegated to XNNPACK, run by the runtime itself before it is written, read
back with its record and digest, inspected, quantized, benchmarked and served. Each test runs once per stack;
a stack's tests are skipped where its extra is not installed (`make test-edge` and `make test-litert` install
them and require them)."""

import asyncio
import os
from dataclasses import dataclass

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
if os.environ.get("DIRAC_REQUIRE_LITERT") == "1" and not (available("litert_torch") and available("ai_edge_litert")):
    raise RuntimeError("DIRAC_REQUIRE_LITERT=1 but litert-torch is not importable: run `make test-litert`, which "
                       "installs it")


class _Mean(nn.Module):
    def forward(self, x):
        return x.mean((2, 3))  # XNNPACK under ExecuTorch does not take a mean without keepdim: it splits the graph


class _Cumsum(nn.Module):
    def forward(self, x):  # LiteRT's XNNPACK delegate has no CUMSUM: it splits the graph
        return torch.cumsum(x, dim=1).mean((2, 3), keepdim=True).flatten(1)


@dataclass(frozen=True)
class Stack:
    key: str  # the export flag and suffix
    engine: str
    runtime: str  # the runtime's name in messages
    digits_ops: int  # ops XNNPACK runs of the digits chain
    odd: type  # a layer the delegate leaves out
    odd_op: str  # how the stack names it


STACKS = [
    pytest.param(Stack("pte", "executorch", "ExecuTorch", 19, _Mean, "aten_mean_dim"), id="executorch",
                 marks=[pytest.mark.edge, pytest.mark.skipif(
                     not available("executorch"),
                     reason="executorch not installed (pip install '.[executorch]', or make test-edge)")]),
    pytest.param(Stack("tflite", "litert", "LiteRT", 12, _Cumsum, "CUMSUM"), id="litert",
                 marks=[pytest.mark.litert, pytest.mark.skipif(
                     not (available("litert_torch") and available("ai_edge_litert")),
                     reason="litert-torch not installed (pip install '.[litert]', or make test-litert)")]),
]


@pytest.fixture(scope="module", params=STACKS)
def stack(request):
    return request.param


@pytest.fixture(scope="module")
def program(stack, tmp_path_factory):
    path = tmp_path_factory.mktemp(stack.key) / f"digits.{stack.key}"
    res = CliRunner().invoke(main, ["export", str(data.embedded_checkpoint()), f"--{stack.key}", str(path)])
    assert res.exit_code == 0, res.output
    return path, res.output


def test_export_writes_a_fully_delegated_program_proven_in_its_runtime(stack, program):
    from dirac_deploy.artifacts.deployed import read_deployed
    from dirac_deploy.opener import open_artifact

    path, output = program
    assert f"XNNPACK runs {stack.digits_ops} ops, all of them" in output and f"{stack.runtime} parity" in output
    art = open_artifact(path)
    assert art.kind.key == stack.key and art.input_shape == (3, 32, 32) and art.num_classes == 10 and art.batch == 1
    assert art.delegation == {"delegated": stack.digits_ops, "not_delegated": {}}
    assert art.provenance.source_sha256 == read_deployed(path).provenance.source_sha256 != ""
    assert art.provenance.mean is not None  # the preprocessing travels with the program
    proof = art.check()
    assert proof.ok and proof.reference == "logits recorded at export"
    # the program agrees with the PyTorch chain on images the probe never saw
    chain = open_artifact(data.embedded_checkpoint())
    x = np.random.default_rng(7).standard_normal((3, 3, 32, 32)).astype(np.float32)
    from dirac_deploy.runtimes import build

    got = build(stack.engine, art.model).run(x)
    with torch.no_grad():
        ref = chain.plain(torch.from_numpy(x)).numpy()
    assert np.abs(got - ref).max() <= 1e-4 * np.abs(ref).max()


@pytest.mark.hostile
def test_an_edited_program_is_refused_before_its_runtime_sees_it(stack, program, tmp_path):
    from dirac_deploy.opener import open_artifact

    path, _ = program
    raw = path.read_bytes()
    weights = bytearray(raw)
    weights[len(raw) // 2] ^= 0x40  # a byte inside the program (weights or code), not the record
    (tmp_path / f"w.{stack.key}").write_bytes(bytes(weights))
    with pytest.raises(ContentEditedError, match="edited after it was built"):
        open_artifact(tmp_path / f"w.{stack.key}")
    forged = raw.replace(b'"dirac_deploy.architecture": "DiracNet', b'"dirac_deploy.architecture": "ResidNet')
    assert forged != raw and len(forged) == len(raw)
    (tmp_path / f"f.{stack.key}").write_bytes(forged)
    with pytest.raises(ContentEditedError):
        open_artifact(tmp_path / f"f.{stack.key}")
    bare = raw.replace(b'{"format": "dirac-deploy/' + stack.key.encode() + b'"', b'{"format": "something-else"')
    assert bare != raw
    (tmp_path / f"b.{stack.key}").write_bytes(bare)
    with pytest.raises(CheckpointError, match="carries no dirac-deploy record"):
        open_artifact(tmp_path / f"b.{stack.key}")


def test_a_partly_delegated_program_is_refused_unless_asked(stack):
    from dirac_deploy.export.program import build_program

    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), stack.odd(), nn.Linear(8, 4)).eval()
    with pytest.raises(ExportError, match=rf"leaves 1 to {stack.runtime}'s own kernels \({stack.odd_op} x1\)"):
        build_program(stack.key, net, (3, 8, 8), 4, Provenance())
    built = build_program(stack.key, net, (3, 8, 8), 4, Provenance(), allow_partial=True)
    assert built.not_delegated == {stack.odd_op: 1} and built.parity is not None and built.parity.ok


def test_inspect_and_serve_read_the_program(stack, program):
    from dirac_deploy.serve.app import create_app
    from dirac_deploy.serve_files import load_models

    path, _ = program
    res = CliRunner().invoke(main, ["inspect", str(path)])
    assert res.exit_code == 0 and f"XNNPACK runs {stack.digits_ops} ops, all of them" in res.output
    assert "parity probe   passed" in res.output
    models = load_models([str(path)], None, 1, instances=2)
    served = models["digits"]
    assert served.runtime == stack.engine and served.info["verified"] == f"parity probe in {stack.runtime}'s runtime"
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


@pytest.mark.parametrize("flag,package,extra", [("pte", "executorch", "[executorch]"),
                                                ("tflite", "litert_torch", "[litert]")])
def test_export_without_the_stack_says_how_to_install(tmp_path, monkeypatch, flag, package, extra):
    """Where the extra is missing, `--pte` / `--tflite` is one line naming the install, before any fold (runs
    everywhere)."""
    import dirac_deploy._optional as optional

    real = optional.require

    def missing(module):
        if module.split(".")[0] == package:
            raise optional.MissingDependencyError(f"{module} is not available; install it with: "
                                                  f"{optional.install_hint(module)}")
        return real(module)

    monkeypatch.setattr("dirac_deploy.export.targets.require", missing)
    res = CliRunner().invoke(main, ["export", str(data.embedded_checkpoint()), f"--{flag}", str(tmp_path / "m.x")])
    assert res.exit_code == 1 and extra in res.output and "Traceback" not in res.output
    assert list(tmp_path.iterdir()) == []


@pytest.mark.hostile
def test_a_program_is_not_a_source_for_quantize_or_export(stack, program, tmp_path):
    path, _ = program
    for args in (["quantize", str(path), "-o", str(tmp_path / "q.onnx"), "--calib", "random:8"],
                 ["export", str(path), "--onnx", str(tmp_path / "m.onnx")]):
        res = CliRunner().invoke(main, args)
        assert res.exit_code == 1 and f"is a{'n' if stack.runtime[0] == 'E' else ''} {stack.runtime} program, already a deployed artifact" in res.output, res.output
        assert "Traceback" not in res.output and list(tmp_path.iterdir()) == []


def test_bench_times_the_chain_as_a_program(stack, tmp_path):
    import json

    out = tmp_path / "b.json"
    res = CliRunner().invoke(main, ["bench", str(data.embedded_checkpoint()), "--backends", stack.engine, "--batch",
                                    "1", "--rounds", "2", "--iters", "3", "--max-seconds", "0.5", "--json", str(out),
                                    "--no-plot"])
    assert res.exit_code == 0, res.output
    records = {r["variant"]: r for r in json.loads(out.read_text())["records"] if r["backend"] == stack.engine}
    assert records["folded"]["status"] == "ok" and records["folded"]["latency_ms"]["p50"] > 0
    assert records["unfolded-as-trained"]["status"] == "ok"  # the DiracNet as trained, lowered as it is
    assert records["folded"]["delegation"] == {"delegated": stack.digits_ops, "not_delegated": {}}
    for rec in records.values():  # a program XNNPACK does not run whole says so next to its time
        if rec["status"] == "ok":
            left = rec["delegation"]["not_delegated"]
            assert any("own kernels" in w for w in rec["warnings"]) == bool(left), rec


@pytest.mark.parametrize("method", ["identity", "projection", "naive"])
def test_quantize_writes_an_int8_program_proven_on_held_out_digits(stack, tmp_path, method):
    """The embedded digits model as an int8 program: proven on its held-out split (accuracy and agreement gates
    as for every target), timed against the fp32 program (not gated here: CI's cores are shared), read back and
    re-checked in the program's runtime."""
    import json

    from dirac_deploy.opener import open_artifact

    out, report = tmp_path / f"q-{method}.{stack.key}", tmp_path / "r.json"
    res = CliRunner().invoke(main, ["quantize", str(data.embedded_checkpoint()), "-o", str(out), "--method", method,
                                    "--min-speedup", "0", "--json", str(report)])
    assert res.exit_code == 0, res.output
    doc = json.loads(report.read_text())
    proof = doc["proof"]
    assert doc["target"] == stack.engine and proof["agreement"] >= 0.99 and proof["images"] == 360
    convs = 13 if method == "projection" else 7  # a projection is a 3x3 and a 1x1 conv
    assert proof["runtime_ops"]["conv"] == {"int8": convs, "fp32": 0}  # every conv quantized, all inside XNNPACK
    assert proof["speed"]["reference"] == f"the fp32 program on {stack.runtime}" and proof["speed"]["rows"]
    # the per-conv table, measured on the quantized PT2E graph: the identity form's carriers as residual rows
    forms = {"identity": ["int8", "int8-residual", "int8-residual", "int8", "int8-residual", "int8", "int8-residual"],
             "projection": ["int8"] + ["int8-projection"] * 6,  # widening convs too: no channel pad needed
             "naive": ["int8"] * 7}
    assert [la["form"] for la in proof["layers"]] == forms[method]
    assert all(la["output_sqnr_db"] > 10 and la["runs_in"] == "int8" for la in proof["layers"])
    art = open_artifact(out)
    assert art.kind.key == stack.key and art.provenance.precision == "int8" and art.provenance.method == method
    assert art.delegation["not_delegated"] == {} and art.check().ok


@pytest.mark.hostile
def test_quantize_to_a_program_needs_the_pytorch_chain(stack, tmp_path):
    from dirac_deploy.export.from_file import export_file

    onnx_path = tmp_path / "m.onnx"
    export_file(data.embedded_checkpoint(), onnx_path)
    out = tmp_path / f"q.{stack.key}"
    res = CliRunner().invoke(main, ["quantize", str(onnx_path), "-o", str(out), "--min-speedup", "0"])
    assert res.exit_code == 1 and "lowered from the PyTorch chain" in res.output and "Traceback" not in res.output
    assert not out.exists()


def test_a_checkpoint_is_served_on_an_edge_runtime_through_its_verified_program(stack):
    from dirac_deploy.serve_files import load_models

    served = load_models([f"{data.embedded_checkpoint()}@{stack.engine}"], None, 1)["digits_diracnet"]
    assert served.runtime == stack.engine and served.info["verified"] == f"parity probe in {stack.runtime}'s runtime"
    x = np.random.default_rng(3).standard_normal((2, 3, 32, 32)).astype(np.float32)
    assert served.infer(x).shape == (2, 10)


@pytest.mark.slow
def test_the_identity_int8_program_of_a_diracnet18_loads_in_its_runtime(stack):
    """ImageNet DiracNet-18 (at 64x64 to keep it short): XNNPACK refused the channel-padded identity of its
    widening convs when the program loaded (xnn_status_unsupported_parameter, ExecuTorch); the identity form
    leaves widening convs plain, and the program loads, runs and gives finite logits of the chain's shape."""
    from dirac_deploy.folding.fold import fold
    from dirac_deploy.models.dirac import DiracNet
    from dirac_deploy.quantize.edge import program
    from dirac_deploy.runtimes import build
    from dirac_deploy.spec import imagenet_spec

    torch.manual_seed(0)
    plain = fold(DiracNet(imagenet_spec(18)).eval()).plain
    x = np.random.default_rng(0).standard_normal((8, 3, 64, 64)).astype(np.float32)
    prog = program(stack.engine, plain, (3, 64, 64), x, form="identity")
    assert prog.not_delegated == {} and prog.runtime_ops["conv"]["int8"] == 17
    got = build(stack.engine, prog).run(x)
    with torch.no_grad():
        ref = plain(torch.from_numpy(x)).numpy()
    assert got.shape == ref.shape and np.isfinite(got).all()


def test_zero_padded_max_pool_is_the_padded_pool_after_a_relu():
    """export.tflite.prepare: a padded max pool after a ReLU becomes zero padding + an unpadded pool (what LiteRT's
    XNNPACK delegate takes whole); exact on non-negative inputs, and left alone where its input may be negative."""
    from dirac_deploy.export.tflite import ZeroPaddedMaxPool, prepare

    torch.manual_seed(0)
    chain = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.MaxPool2d(3, 2, 1), nn.Conv2d(4, 4, 3),
                          nn.MaxPool2d(3, 2, 1)).eval()
    ready = prepare(chain)
    assert isinstance(ready[2], ZeroPaddedMaxPool) and isinstance(ready[4], nn.MaxPool2d)  # the second has no ReLU
    x = torch.randn(2, 3, 17, 16)
    with torch.no_grad():
        assert torch.equal(ready(x), chain(x))
        negative = -torch.rand(1, 4, 9, 9) - 0.1  # why the ReLU matters: zero padding wins every edge window
        assert not torch.equal(ZeroPaddedMaxPool(nn.MaxPool2d(3, 2, 1))(negative), nn.MaxPool2d(3, 2, 1)(negative))

"""ONNX export: audit, ORT parity, dynamic batch, metadata, Triton config (official protobuf), TensorRT paths."""

import importlib.util
import sys
import types
from pathlib import Path

import numpy as np
import onnx
import onnx.numpy_helper
import pytest
import torch
from click.testing import CliRunner
from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2

from dirac_deploy import DiracNet, MissingDependencyError, cifar_spec, fold, load_checkpoint
from dirac_deploy.artifacts.onnx import ALLOWED_OPS, audit_violations
from dirac_deploy.cli import main
from dirac_deploy.data import embedded_checkpoint, load_holdout
from dirac_deploy.errors import EquivalenceError, ExportError
from dirac_deploy.export import onnx as onnx_export
from dirac_deploy.export.fp16 import scan_fp16
from dirac_deploy.export.from_file import export_file
from dirac_deploy.export.onnx import export_onnx, to_onnx_proto
from dirac_deploy.export.tensorrt import BatchRange, build_engine
from dirac_deploy.runtimes.onnxruntime import session as ort_session

import reference


@pytest.fixture(scope="module")
def embedded_export(tmp_path_factory):
    d = tmp_path_factory.mktemp("export")
    report = export_file(embedded_checkpoint(), d / "digits.onnx", unfolded=True, triton_repo=d / "repo", name="digits")
    return d, report


def test_embedded_default_exports_audited_and_equal(embedded_export):
    d, report = embedded_export
    assert sorted(p.name for p in d.iterdir()) == ["digits.onnx", "digits.unfolded.onnx", "repo"]  # no .onnx.data
    model = onnx.load(d / "digits.onnx")
    onnx.checker.check_model(model, full_check=True)
    assert {n.op_type for n in model.graph.node} <= ALLOWED_OPS
    assert model.opset_import[0].version >= 18
    assert [i.name for i in model.graph.input] == ["input"] and [o.name for o in model.graph.output] == ["logits"]
    assert model.graph.input[0].type.tensor_type.shape.dim[0].dim_param  # symbolic batch axis
    props = {p.key: p.value for p in model.metadata_props}
    assert props["dirac_deploy.architecture"].startswith("DiracNet-10")
    assert len(props["dirac_deploy.source_sha256"]) == 64 and props["dirac_deploy.input_size"] == "32"
    assert float(props["dirac_deploy.fold_max_rel_error"]) < 1e-4
    assert [p.batch for p in report.onnx.folded.parity] == [1, 8] and all(p.ok for p in report.onnx.folded.parity)
    # held-out accuracy through ONNX Runtime equals PyTorch's
    x, y = load_holdout()
    (logits,) = ort_session(model).run(["logits"], {"input": x.numpy()})
    assert (np.argmax(logits, 1) == y.numpy()).mean() > 0.95


def test_unfolded_graph_fails_the_audit_and_shows_what_folding_removed(embedded_export):
    d, report = embedded_export
    unfolded = onnx.load(d / "digits.unfolded.onnx")
    violations = audit_violations(unfolded)
    assert any(v.startswith("BatchNormalization") for v in violations)
    assert any(v.startswith("ReduceL2") for v in violations)  # normalize(W) of the Dirac parameterization
    assert report.onnx.unfolded.node_count > 5 * report.onnx.folded.node_count


def test_dynamic_batch_sizes_in_onnx_runtime(embedded_export):
    d, _ = embedded_export
    session = ort_session(onnx.load(d / "digits.onnx"))
    model = fold(load_checkpoint(embedded_checkpoint()).model).plain
    for b in range(1, 6):
        x = torch.randn(b, 3, 32, 32)
        (got,) = session.run(["logits"], {"input": x.numpy()})
        with torch.no_grad():
            ref = model(x).numpy()
        assert got.shape == (b, 10)
        assert np.abs(got - ref).max() <= 1e-4 * np.abs(ref).max()


def test_triton_config_parses_with_the_official_protobuf(embedded_export):
    d, _ = embedded_export
    text = (d / "repo" / "digits" / "config.pbtxt").read_text()
    config = text_format.Parse(text, model_config_pb2.ModelConfig())
    assert config.name == "digits" and config.platform == "onnxruntime_onnx"
    assert config.max_batch_size == 32 and list(config.dynamic_batching.preferred_batch_size) == [8]
    assert config.input[0].name == "input" and list(config.input[0].dims) == [3, 32, 32]
    assert config.input[0].data_type == model_config_pb2.TYPE_FP32
    assert config.output[0].name == "logits" and list(config.output[0].dims) == [10]
    repo_model = onnx.load(d / "repo" / "digits" / "1" / "model.onnx")
    assert repo_model == onnx.load(d / "digits.onnx")


@pytest.mark.slow
@pytest.mark.parametrize("depth", [18, 34])
def test_imagenet_diracnets_export_and_pass(tmp_path, depth):
    params = reference.define_params("imagenet", depth, 1.0, seed=depth)
    torch.save(reference.as_params_stats(params), tmp_path / "ckpt.pth")
    r = export_file(tmp_path / "ckpt.pth", tmp_path / "m.onnx")
    assert r.onnx.folded.nodes["Conv"] == depth - 1 and all(p.ok for p in r.onnx.folded.parity)
    x = torch.randn(2, 3, 224, 224)
    (got,) = ort_session(onnx.load(tmp_path / "m.onnx")).run(["logits"], {"input": x.numpy()})
    with torch.no_grad():
        ref = reference.forward(params, x).numpy()
    assert np.abs(got - ref).max() <= 1e-4 * np.abs(ref).max()
    assert (got.argmax(1) == ref.argmax(1)).all()


def test_parity_failure_names_the_output_and_writes_nothing(tmp_path, monkeypatch):
    model = DiracNet(cifar_spec(10)).eval()
    plain = fold(model).plain
    real = onnx_export.simplify

    def corrupting_simplify(m):  # an exporter bug: one conv weight shifted
        m = real(m)
        init = next(i for i in m.graph.initializer if i.name == "group2_block1_conv.weight")
        arr = onnx.numpy_helper.to_array(init) + 0.5
        init.CopyFrom(onnx.numpy_helper.from_array(arr, init.name))
        return m

    monkeypatch.setattr(onnx_export, "simplify", corrupting_simplify)
    with pytest.raises(EquivalenceError, match="output 'logits' at batch 1"):
        export_onnx(plain, tmp_path / "m.onnx", input_shape=(3, 32, 32))
    assert list(tmp_path.iterdir()) == []


def test_audit_failure_raises_naming_nodes(tmp_path, monkeypatch):
    model = DiracNet(cifar_spec(10)).eval()
    monkeypatch.setattr(onnx_export, "simplify", lambda m: m)  # skip nothing but onnxsim
    # Exporting the *unfolded* model through the folded path must be refused by the audit.
    with pytest.raises(ExportError, match=r"failed the audit: .*(BatchNormalization|ReduceL2|Div)"):
        export_onnx(model, tmp_path / "m.onnx", input_shape=(3, 32, 32))
    assert list(tmp_path.iterdir()) == []


def test_fp16_scan_reports_overflow_and_subnormals_by_layer():
    sd = {"a.weight": torch.tensor([1.0, 7e4, -1e5]), "b.weight": torch.tensor([1e-6, 0.0, 0.5]),
          "c.weight": torch.tensor([0.1, 2.0])}
    findings = {f.tensor: f for f in scan_fp16(sd)}
    assert set(findings) == {"a.weight", "b.weight"}
    assert findings["a.weight"].overflow == 2 and findings["b.weight"].subnormal == 1


def test_fp16_scan_catches_tiny_running_variance_blowup():
    model = DiracNet(cifar_spec(10)).eval()
    # A near-dead channel (variance far below eps) with a large gamma: s = 500 / sqrt(1e-5) ~ 1.6e5, so the
    # Dirac centre tap (alpha = 1) folds to a value fp16 cannot hold.
    model.group1.block1.bn.running_var.fill_(1e-12)
    model.group1.block1.bn.weight.data.fill_(500.0)
    plain = fold(model).plain
    findings = scan_fp16(plain.state_dict())
    assert [f.tensor for f in findings if f.overflow] == ["group1_block1_conv.weight"]


def test_opset_below_18_is_refused():
    with pytest.raises(ExportError, match="opset 17 is too low"):
        to_onnx_proto(torch.nn.Identity(), torch.zeros(1, 3), opset=17, optimize=True)


@pytest.mark.parametrize("text", ["8:1:32", "1:8", "a:b:c", "0:1:2"])
def test_bad_batch_range(text):
    with pytest.raises(ExportError, match="bad batch range"):
        BatchRange.parse(text)


def test_tensorrt_missing_is_a_clear_error_and_writes_nothing(tmp_path):
    if importlib.util.find_spec("tensorrt"):
        pytest.skip("TensorRT is installed here; the missing-dependency path cannot be exercised")
    res = CliRunner().invoke(main, ["export", str(embedded_checkpoint()), "--onnx", str(tmp_path / "m.onnx"),
                                    "--trt", str(tmp_path / "m.plan")])
    assert res.exit_code == 1
    assert "pip install '.[trt]'" in res.stderr and len(res.stderr.strip().splitlines()) == 1
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(MissingDependencyError):
        build_engine(tmp_path / "m.onnx", tmp_path / "m.plan", input_shape=(3, 32, 32), batch_range=BatchRange(1, 2, 4))


class _RecordingTensorRT(types.ModuleType):
    """API-contract double of the TensorRT 11 Python API (records calls; executes nothing).

    It checks that build_engine speaks the 11.x API (strongly typed network, memory pool limit, name-based
    optimization profile, serialized network); the real build is `test_tensorrt_real_build` below.
    """

    def __init__(self):
        super().__init__("tensorrt")
        calls = self.calls = []
        self.__version__ = "11.contract"

        class Logger:
            WARNING = "W"

            def __init__(self, level):
                calls.append(("Logger", level))

        class Flag:
            STRONGLY_TYPED = 5

        class Pool:
            WORKSPACE = "workspace"

        class Profile:
            def set_shape(self, name, mn, opt, mx):
                calls.append(("set_shape", name, mn, opt, mx))

        class Config:
            def set_memory_pool_limit(self, pool, size):
                calls.append(("pool", pool, size))

            def add_optimization_profile(self, _p):
                calls.append(("profile",))

        class Builder:
            def __init__(self, logger):
                pass

            def create_network(self, flags):
                calls.append(("create_network", flags))
                return "network"

            def create_builder_config(self):
                return Config()

            def create_optimization_profile(self):
                return Profile()

            def build_serialized_network(self, network, _config):
                calls.append(("build", network))
                return b"PLAN"

        class OnnxParser:
            num_errors = 0

            def __init__(self, network, logger):
                pass

            def parse_from_file(self, path):
                calls.append(("parse", Path(path).name))
                return True

        self.Logger, self.NetworkDefinitionCreationFlag, self.MemoryPoolType = Logger, Flag, Pool
        self.Builder, self.OnnxParser = Builder, OnnxParser


def test_build_engine_api_contract(tmp_path, monkeypatch):
    fake = _RecordingTensorRT()
    monkeypatch.setitem(sys.modules, "tensorrt", fake)
    (tmp_path / "m.onnx").write_bytes(b"onnx")
    r = build_engine(tmp_path / "m.onnx", tmp_path / "m.plan", input_shape=(3, 32, 32),
                     batch_range=BatchRange(1, 8, 32), workspace_mb=256)
    assert (tmp_path / "m.plan").read_bytes() == b"PLAN" and r.size_bytes == 4
    assert ("create_network", 1 << 5) in fake.calls
    assert ("pool", "workspace", 256 << 20) in fake.calls
    assert ("set_shape", "input", (1, 3, 32, 32), (8, 3, 32, 32), (32, 3, 32, 32)) in fake.calls
    assert ("parse", "m.onnx") in fake.calls


@pytest.mark.trt
def test_tensorrt_real_build(tmp_path):
    import tensorrt  # noqa: F401

    r = export_file(embedded_checkpoint(), tmp_path / "m.onnx", trt_path=tmp_path / "m.plan",
                    triton_repo=tmp_path / "repo", batch_range=BatchRange(1, 4, 8))
    assert r.engine.size_bytes > 0 and (tmp_path / "repo" / "m_trt" / "1" / "model.plan").exists()


def test_export_cli_prints_both_graphs(tmp_path):
    res = CliRunner().invoke(main, ["export", str(embedded_checkpoint()), "--onnx", str(tmp_path / "m.onnx"),
                                    "--unfolded"])
    assert res.exit_code == 0, res.output
    assert "folded graph    19 nodes" in res.stdout and "BatchNormalization" in res.stdout
    assert "ORT parity b=8" in res.stdout


def test_export_cli_bad_inputs(tmp_path):
    runner = CliRunner()
    plain = tmp_path / "p.pth"
    assert runner.invoke(main, ["fold", str(embedded_checkpoint()), "-o", str(plain)]).exit_code == 0
    cases = [
        (["export", str(plain), "--onnx", str(tmp_path / "m.onnx"), "--opset", "17"], "opset 17 is too low"),
        (["export", str(plain), "--onnx", str(tmp_path / "m.onnx"), "--batch-range", "4:2:1"], "bad batch range"),
        (["export", str(plain), "--onnx", str(tmp_path / "m.onnx"), "--unfolded"], "needs the unfolded source checkpoint"),
        (["export", str(plain)], "nothing to export"),
        (["export", str(tmp_path / "missing.pth"), "--onnx", str(tmp_path / "m.onnx")], "no such file"),
        (["export", str(plain), "--onnx", str(tmp_path / "nodir" / "m.onnx")], "does not exist"),
        (["export", str(plain), "--onnx", str(plain)], "is the input file"),
    ]
    for args, fragment in cases:
        res = runner.invoke(main, args)
        assert res.exit_code == 1 and fragment in res.stderr, (args, res.output)
        assert "Traceback" not in res.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["p.pth"]

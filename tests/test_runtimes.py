"""runtimes: one Runner per engine, one table of engines that every caller reads."""

from __future__ import annotations

import sys
import types

import numpy as np
import pytest

from dirac_deploy import data, runtimes
from dirac_deploy._optional import available

needs_openvino = pytest.mark.skipif(not available("openvino"), reason="OpenVINO not installed (pip install '.[openvino]')")


@pytest.fixture(scope="module")
def digits_onnx():
    from dirac_deploy.export.from_file import verified_onnx
    from dirac_deploy.opener import load_model

    return verified_onnx(load_model(data.embedded_checkpoint())).model


@needs_openvino
def test_openvino_compiled_applies_the_precision_an_ir_records(digits_onnx):
    """OpenVINO's compile_model ignores an IR's runtime_options; on a CPU whose plugin defaults to bf16 an fp32 IR
    would silently run in bf16. The recorded hint is applied, and an explicit one wins."""
    from dirac_deploy.runtimes.openvino import compiled, load, record_hint

    net = load(digits_onnx)
    for recorded in ("f32", "bf16"):
        model = record_hint(net.clone(), recorded)
        got = compiled(model.clone(), batch=1, hint=None).get_property("INFERENCE_PRECISION_HINT")
        want = compiled(net.clone(), batch=1, hint=recorded).get_property("INFERENCE_PRECISION_HINT")
        assert str(got) == str(want)
    model = record_hint(net.clone(), "bf16")
    got = compiled(model.clone(), batch=1, hint="f32").get_property("INFERENCE_PRECISION_HINT")
    assert "float32" in str(got) or "f32" in str(got)


@needs_openvino
def test_openvino_runner_passes_the_hint_its_precision_rule_gives(monkeypatch, digits_onnx):
    """What reaches compile_model: the hint `hint_for` gives the artifact's precision, else the IR's recorded one
    (so the check above cannot pass by chance on a CPU whose default already is f32)."""
    import openvino as ov

    from dirac_deploy.runtimes.openvino import compiled, hint_for, load, record_hint

    assert [hint_for(p) for p in ("fp32", "bf16", "int8", None)] == ["f32", "bf16", None, None]
    seen = []

    class Core(ov.Core):
        def compile_model(self, _model, _device, config):
            seen.append(config.get("INFERENCE_PRECISION_HINT"))
            return None

    net = load(digits_onnx)
    monkeypatch.setattr(ov, "Core", Core)
    for recorded in ("f32", "bf16"):
        compiled(record_hint(net.clone(), recorded), hint=None)
    compiled(record_hint(net.clone(), "bf16"), hint="f32")
    compiled(net.clone(), hint=None)
    assert seen == ["f32", "bf16", "f32", None]


def test_runners_of_every_cpu_engine_agree_on_the_digits_chain(digits_onnx):
    """ONNX Runtime, OpenVINO (compiled for batch 4, so the last call of 10 images is padded) and PyTorch give
    the same logits; `run_batched` drops the padding."""
    import torch

    from dirac_deploy.opener import load_model

    x = np.random.default_rng(0).standard_normal((10, 3, 32, 32)).astype(np.float32)
    ref = runtimes.logits("onnxruntime", digits_onnx, x, batch=3)
    plain = load_model(data.embedded_checkpoint()).plain
    with torch.no_grad():
        want = plain(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(ref, want, rtol=1e-4, atol=1e-4)
    torch_runner = runtimes.build("torch", plain)
    np.testing.assert_allclose(runtimes.run_batched(torch_runner, x), want, rtol=1e-5, atol=1e-5)
    if available("openvino"):
        ov = runtimes.build("openvino", digits_onnx, batch=4, precision="fp32")
        got = runtimes.run_batched(ov, x)
        assert got.shape == ref.shape
        np.testing.assert_allclose(got, ref, rtol=1e-3, atol=1e-3)
        assert runtimes.for_batches("openvino", digits_onnx)(2).batch == 2


def test_unknown_engines_and_devices_are_refused_in_one_line():
    with pytest.raises(ValueError, match="unknown engine 'nope'; choose from onnxruntime, openvino, torch, executorch, "
                                         "litert, tensorrt"):
        runtimes.build("nope", None)
    assert runtimes.unavailable("tensorrt", "cpu") == "TensorRT runs on cuda here, not cpu"
    assert "runs on cpu here, not cuda" in runtimes.unavailable("openvino", "cuda")


def test_every_list_of_engines_is_read_from_the_table():
    """serve's runtimes, the runtimes an artifact kind is served on, quantize's targets and bench's backends."""
    from dirac_deploy.bench import ALL_BACKENDS, BACKENDS
    from dirac_deploy.kinds import KINDS
    from dirac_deploy.quantize import TARGETS

    assert runtimes.ENGINES == ("onnxruntime", "openvino", "torch", "executorch", "litert", "tensorrt")
    assert runtimes.SERVING == ("onnxruntime", "openvino", "torch", "executorch", "litert")
    assert TARGETS == ("onnxruntime", "openvino", "tensorrt", "executorch", "litert")
    assert {k: v.runtimes for k, v in KINDS.items()} == {
        "onnx": ("onnxruntime", "openvino"), "openvino-ir": ("openvino",), "pte": ("executorch",),
        "tflite": ("litert",), "torch": ("onnxruntime", "openvino", "torch", "executorch", "litert")}
    assert {engine for engine, _ in BACKENDS.values()} == set(runtimes.ENGINES) and len(ALL_BACKENDS) == 10


class _ToyRunner:
    """A toy engine: logits are the per-image mean of the input, in 3 classes."""

    engine = "toy"
    device = "cpu"

    def __init__(self, model, *, threads=None, batch=None, precision=None, device="cpu"):  # noqa: ARG002
        self.model, self.threads, self.batch, self.precision = model, threads, batch, precision

    def run(self, x):
        return np.repeat(x.reshape(len(x), -1).mean(axis=1, keepdims=True), 3, axis=1) * self.model

    def bind(self, x):
        return lambda: self.run(x)


@pytest.fixture
def toy_engine(monkeypatch):
    """A runtime added as docs/layout.md says: one module (here made in memory) and one row."""
    module = types.ModuleType("toy_runtime")
    module.load = lambda model: float(model)
    module.Runner = _ToyRunner
    monkeypatch.setitem(sys.modules, "toy_runtime", module)
    monkeypatch.setattr(runtimes, "ENGINE_TABLE", dict(runtimes.ENGINE_TABLE))
    runtimes.register(runtimes.Engine("toy", "Toy", "toy_runtime", "numpy", ("onnx",)))
    return module


def test_a_toy_engine_is_one_module_and_one_row(toy_engine, digits_onnx, tmp_path):
    """Registered, it is built, batched, reported available, and served on for ONNX files, with no other edit."""
    from dirac_deploy.kinds import KINDS
    from dirac_deploy.serve.model import ModelSource, check_sources

    x = np.ones((5, 1, 2, 2), np.float32)
    assert runtimes.logits("toy", 2, x, batch=2).tolist() == [[2.0] * 3] * 5
    assert runtimes.unavailable("toy") is None and "toy" in runtimes.engines(serving=True)
    assert KINDS["onnx"].runtimes == ("onnxruntime", "openvino", "toy")
    path = tmp_path / "digits.onnx"
    path.write_bytes(digits_onnx.SerializeToString())
    assert check_sources([ModelSource("m", path, "toy")])[0].runtime == "toy"

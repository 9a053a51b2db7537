"""runtime: the one place ONNX Runtime sessions and OpenVINO compiled models are built."""

from __future__ import annotations

import pytest

from dirac_deploy import data
from dirac_deploy._optional import available


@pytest.mark.skipif(not available("openvino"), reason="OpenVINO not installed (pip install '.[openvino]')")
def test_openvino_compiled_applies_the_precision_an_ir_records():
    """OpenVINO's compile_model ignores an IR's runtime_options; on a CPU whose plugin defaults to bf16 an fp32 IR
    would silently run in bf16. The recorded hint is applied, and an explicit one wins."""
    from dirac_deploy.artifacts.open import load_model
    from dirac_deploy.export.from_file import verified_onnx
    from dirac_deploy.quantize.openvino import with_precision
    from dirac_deploy.runtime import openvino_compiled, openvino_model

    net = openvino_model(verified_onnx(load_model(data.embedded_checkpoint())).model)
    for recorded in ("f32", "bf16"):
        model = with_precision(net.clone(), recorded)
        got = openvino_compiled(model.clone(), batch=1, precision=None).get_property("INFERENCE_PRECISION_HINT")
        want = openvino_compiled(net.clone(), batch=1, precision=recorded).get_property("INFERENCE_PRECISION_HINT")
        assert str(got) == str(want)
    model = with_precision(net.clone(), "bf16")
    got = openvino_compiled(model.clone(), batch=1, precision="f32").get_property("INFERENCE_PRECISION_HINT")
    assert "float32" in str(got) or "f32" in str(got)


@pytest.mark.skipif(not available("openvino"), reason="OpenVINO not installed (pip install '.[openvino]')")
def test_openvino_compiled_passes_the_recorded_hint_to_the_plugin(monkeypatch):
    """The same on any CPU: what reaches compile_model is the IR's recorded hint (or the explicit one), so the
    check above cannot pass by chance on a CPU whose default already is f32."""
    import openvino as ov

    from dirac_deploy.artifacts.open import load_model
    from dirac_deploy.export.from_file import verified_onnx
    from dirac_deploy.quantize.openvino import with_precision
    from dirac_deploy.runtime import openvino_compiled, openvino_model

    seen = []

    class Core(ov.Core):
        def compile_model(self, _model, _device, config):
            seen.append(config.get("INFERENCE_PRECISION_HINT"))
            return None

    monkeypatch.setattr(ov, "Core", Core)
    net = openvino_model(verified_onnx(load_model(data.embedded_checkpoint())).model)
    for recorded in ("f32", "bf16"):
        openvino_compiled(with_precision(net.clone(), recorded), precision=None)
    openvino_compiled(with_precision(net.clone(), "bf16"), precision="f32")
    openvino_compiled(net.clone(), precision=None)
    assert seen == ["f32", "bf16", "f32", None]

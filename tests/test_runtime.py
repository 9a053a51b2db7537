"""runtime: the one place ONNX Runtime sessions and OpenVINO compiled models are built."""

from __future__ import annotations

import pytest

from dirac_deploy import data
from dirac_deploy._optional import available


@pytest.mark.skipif(not available("openvino"), reason="OpenVINO not installed (pip install 'dirac-deploy[openvino]')")
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

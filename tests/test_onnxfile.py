"""onnxfile: the audit's op set and the parity probe's tolerance are the tool's, decided from what the graph
holds; a file's metadata may narrow them, never widen them."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from click.testing import CliRunner
from onnx import helper, numpy_helper

from dirac_deploy import data
from dirac_deploy.cli import main
from dirac_deploy.errors import EquivalenceError, ExportError
from dirac_deploy.onnxfile import check_artifact, content_kind, narrowed_rtol, read_onnx


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    path = tmp_path_factory.mktemp("onnx") / "m.onnx"
    assert CliRunner().invoke(main, ["export", str(data.embedded_checkpoint()), "--onnx", str(path)]).exit_code == 0
    return path


def _edited(src, dst, *, scale: float = 1.0, meta: dict | None = None, extra_mul: bool = False):
    model = onnx.load(str(src))
    if scale != 1.0:
        init = next(t for t in model.graph.initializer if len(t.dims) == 4)
        init.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(init) * scale, init.name))
    if extra_mul:  # logits * 1: a Mul, which only the quantized graphs' op set admits
        last = model.graph.node[-1]
        last.output[0] = "pre_logits"
        model.graph.initializer.append(numpy_helper.from_array(np.ones((), np.float32), "one"))
        model.graph.node.append(helper.make_node("Mul", ["pre_logits", "one"], ["logits"], name="scale"))
    for k, v in (meta or {}).items():
        entry = next((p for p in model.metadata_props if p.key == k), None) or model.metadata_props.add(key=k)
        entry.value = v
    onnx.save(model, str(dst))
    return dst


def test_a_recorded_tolerance_cannot_loosen_the_parity_check(exported, tmp_path):
    path = _edited(exported, tmp_path / "loose.onnx", scale=1.3, meta={"dirac_deploy.probe_rtol": "inf"})
    with pytest.raises(EquivalenceError, match="does not reproduce"):
        check_artifact(read_onnx(path))
    res = CliRunner().invoke(main, ["inspect", str(path)])
    assert res.exit_code == 1 and "FAILED" in res.output


def test_a_declared_quantized_graph_without_quantization_gets_the_folded_audit(exported, tmp_path):
    path = _edited(exported, tmp_path / "mul.onnx", extra_mul=True, meta={"dirac_deploy.graph": "quantized-int8"})
    art = read_onnx(path)
    assert content_kind(art.model) == "folded" and art.graph_kind == "folded"
    with pytest.raises(ExportError, match="Mul"):
        check_artifact(art)


def test_the_tolerance_is_narrowed_never_widened():
    assert narrowed_rtol(0.05, "inf") == 0.05 and narrowed_rtol(0.05, "1e9") == 0.05
    assert narrowed_rtol(0.05, "0.001") == 0.001
    for junk in ("nan", "-1", "0", "x", "", None):
        assert narrowed_rtol(0.05, junk) == 0.05

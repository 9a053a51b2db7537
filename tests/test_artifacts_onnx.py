"""onnxfile: the audit's op set and the parity probe's tolerance are the tool's, decided from what the graph
holds; a file's metadata may narrow them, never widen them."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from click.testing import CliRunner
from onnx import helper, numpy_helper

from dirac_deploy import data
from dirac_deploy.artifacts.onnx import check_artifact, content_kind, narrowed_rtol, read_onnx
from dirac_deploy.cli import main
from dirac_deploy.errors import CheckpointError, EquivalenceError, ExportError


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


def _with_meta(src, dst, key, value):
    model = onnx.load(str(src))
    next(p for p in model.metadata_props if p.key == key).value = value
    onnx.save(model, str(dst))
    return dst


def test_external_data_is_checked_against_the_file_before_it_is_read(exported, tmp_path):
    model = onnx.load(str(exported))
    onnx.save(model, str(tmp_path / "ext.onnx"), save_as_external_data=True, location="ext.bin", size_threshold=0)
    assert read_onnx(tmp_path / "ext.onnx").input_shape == (3, 32, 32)  # a well-formed one loads
    big = onnx.load(str(tmp_path / "ext.onnx"), load_external_data=False)
    t = next(t for t in big.graph.initializer if t.data_location == onnx.TensorProto.EXTERNAL)
    del t.dims[:]
    t.dims.extend([1000, 1000, 1000])  # 4e9 bytes declared ...
    for e in t.external_data:
        if e.key == "length":
            e.value = str(4 * 10**9)
    onnx.save(big, str(tmp_path / "big.onnx"))
    with open(tmp_path / "ext.bin", "r+b") as f:  # ... over a sparse file that claims to hold them
        f.truncate(4 * 10**9 + 100)
    with pytest.raises(CheckpointError, match="external data over|needs"):
        read_onnx(tmp_path / "big.onnx")
    res = CliRunner().invoke(main, ["inspect", str(tmp_path / "big.onnx")])
    assert res.exit_code == 1 and "Traceback" not in res.output and len(res.output.splitlines()) == 1


def test_graphs_and_probes_beyond_the_bounds_are_refused_before_running(exported, tmp_path):
    huge = onnx.load(str(exported))
    last = huge.graph.node[-1]
    last.output[0] = "r0"
    huge.graph.node.extend(helper.make_node("Relu", [f"r{i}"], [f"r{i + 1}" if i < 20_000 else "logits"])
                           for i in range(20_001))
    onnx.save(huge, str(tmp_path / "huge.onnx"))
    with pytest.raises(CheckpointError, match="nodes"):
        read_onnx(tmp_path / "huge.onnx")
    wide = onnx.load(str(exported))
    for d, v in zip(wide.graph.input[0].type.tensor_type.shape.dim[2:], (60000, 60000)):
        d.dim_value = v
    onnx.save(wide, str(tmp_path / "wide.onnx"))
    with pytest.raises(CheckpointError, match="beyond what this tool serves"):
        read_onnx(tmp_path / "wide.onnx")
    for name, probe in (("batch", '{"seed": 0, "batch": 1000000, "logits": []}'),
                        ("deep", "[" * 100_000 + "]" * 100_000),
                        ("shape", '{"seed": 0, "batch": 2, "logits": [[1, 2], [3]]}')):
        path = _with_meta(exported, tmp_path / f"{name}.onnx", "dirac_deploy.parity_probe", probe)
        with pytest.raises(CheckpointError, match="damaged parity probe"):
            check_artifact(read_onnx(path))

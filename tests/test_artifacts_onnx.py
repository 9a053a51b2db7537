"""onnxfile: the audit's op set and the parity probe's tolerance are the tool's, decided from what the graph
holds; a file's metadata may narrow them, never widen them."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from click.testing import CliRunner
from onnx import helper, numpy_helper

from dirac_deploy import data
from dirac_deploy.artifacts.digest import ContentEditedError, stamp_onnx
from dirac_deploy.artifacts.onnx import check_artifact, content_kind, narrowed_rtol, read_onnx
from dirac_deploy.cli import main
from dirac_deploy.errors import CheckpointError, EquivalenceError, ExportError


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    path = tmp_path_factory.mktemp("onnx") / "m.onnx"
    assert CliRunner().invoke(main, ["export", str(data.embedded_checkpoint()), "--onnx", str(path)]).exit_code == 0
    return path


def _edited(src, dst, *, scale: float = 1.0, meta: dict | None = None, extra_mul: bool = False,
            restamp: bool = True, edit=None):
    """`src` edited; `restamp`: with its content digest recomputed, as a deliberate attacker would (so the checks
    behind the digest are what is tested), else left stale (the digest check is)."""
    model = onnx.load(str(src))
    if scale != 1.0:
        init = next(t for t in model.graph.initializer if len(t.dims) == 4)
        init.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(init) * scale, init.name))
    if extra_mul:  # logits * 1: a Mul, which only the quantized graphs' op set admits
        last = model.graph.node[-1]
        last.output[0] = "pre_logits"
        model.graph.initializer.append(numpy_helper.from_array(np.ones((), np.float32), "one"))
        model.graph.node.append(helper.make_node("Mul", ["pre_logits", "one"], ["logits"], name="scale"))
    if edit is not None:
        edit(model)
    for k, v in (meta or {}).items():
        entry = next((p for p in model.metadata_props if p.key == k), None) or model.metadata_props.add(key=k)
        entry.value = v
    if restamp:
        stamp_onnx(model)
    onnx.save(model, str(dst))
    return dst


def _logits_through(model, op_nodes, initializers):
    """Route the graph's logits through extra nodes: the last node writes 'pre_logits', the new ones 'logits'."""
    model.graph.node[-1].output[0] = "pre_logits"
    model.graph.initializer.extend(initializers)
    model.graph.node.extend(op_nodes)


@pytest.mark.hostile
def test_an_edit_without_a_new_digest_is_refused_by_every_reader(exported, tmp_path):
    path = _edited(exported, tmp_path / "scaled.onnx", scale=1.5, restamp=False)
    with pytest.raises(ContentEditedError, match="edited after it was built"):
        read_onnx(path)
    for args in (["inspect", str(path)], ["export", str(path), "--onnx", str(tmp_path / "o.onnx")],
                 ["quantize", str(path), "-o", str(tmp_path / "q.onnx"), "--min-speedup", "0"]):
        res = CliRunner().invoke(main, args)
        assert res.exit_code == 1 and "edited after it was built" in res.output, (args, res.output)
    from dirac_deploy.serve_files import load_models

    with pytest.raises(ContentEditedError):
        load_models([str(path)], None, 1)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["scaled.onnx"]


@pytest.mark.hostile
def test_an_unused_fp16_tensor_and_a_quantized_claim_do_not_loosen_the_audit(exported, tmp_path):
    """The first finding of round four: an fp32 export plus one unused fp16 initializer, a Mul x1.03 on the
    logits and `graph=quantized-int8` passed as quantized (5% probe tolerance). The kind comes from the live
    graph's structure, so it gets the folded audit, and the Mul fails it."""
    def edit(model):
        model.graph.initializer.append(numpy_helper.from_array(np.ones(4, np.float16), "unused_fp16"))
        _logits_through(model, [helper.make_node("Mul", ["pre_logits", "k"], ["logits"], name="nudge")],
                        [numpy_helper.from_array(np.full((), 1.03, np.float32), "k")])

    path = _edited(exported, tmp_path / "nudged.onnx", edit=edit, meta={"dirac_deploy.graph": "quantized-int8"})
    art = read_onnx(path)
    assert content_kind(art.model) == "folded" and art.graph_kind == "folded"
    with pytest.raises(ExportError, match="Mul"):
        check_artifact(art)
    res = CliRunner().invoke(main, ["inspect", str(path)])
    assert res.exit_code == 1 and "passed" not in res.output.split("audit")[-1][:40]


@pytest.mark.hostile
def test_a_lossy_qdq_pair_on_the_logits_is_not_a_quantized_graph(exported, tmp_path):
    def edit(model):
        _logits_through(model, [helper.make_node("QuantizeLinear", ["pre_logits", "s", "z"], ["q"]),
                                helper.make_node("DequantizeLinear", ["q", "s", "z"], ["logits"])],
                        [numpy_helper.from_array(np.full((), 0.5, np.float32), "s"),
                         numpy_helper.from_array(np.zeros((), np.int8), "z")])

    path = _edited(exported, tmp_path / "lossy.onnx", edit=edit, meta={"dirac_deploy.graph": "quantized-int8"})
    art = read_onnx(path)
    assert content_kind(art.model) == "folded"  # no conv takes int8 weights: Q/DQ on the logits decide nothing
    with pytest.raises(ExportError, match="QuantizeLinear"):
        check_artifact(art)


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
    """`key` set to `value`, the digest recomputed (the checks behind it are tested)."""
    model = onnx.load(str(src))
    next(p for p in model.metadata_props if p.key == key).value = value
    stamp_onnx(model)
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

"""Low-precision artifacts: identity-aware int8, the naive anchor, fp16, OpenVINO (IR, NNCF, bf16), their
proofs and refusals, the per-layer report, serving them, and the bench's low-precision rows."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
from click.testing import CliRunner

from dirac_deploy import data
from dirac_deploy._optional import available
from dirac_deploy.artifacts.onnx import check_artifact, read_onnx
from dirac_deploy.cli import main
from dirac_deploy.kernels import identity_dominance
from dirac_deploy.quantize.graph import fake_int8, split_diag

DIGITS = data.embedded_checkpoint()
NOISY = data.noisy_checkpoint()
needs_openvino = pytest.mark.skipif(not (available("openvino") and available("nncf")),
                                    reason="OpenVINO / NNCF not installed (pip install '.[openvino]')")


def _quantize(*args):
    """The speed gate off (`--min-speedup 0`, unless given): these tests read the artifacts on any CPU; the
    gate itself is tested with a fake clock in test_quantize_speed."""
    gate = [] if "--min-speedup" in args else ["--min-speedup", "0"]
    return CliRunner().invoke(main, ["quantize", *map(str, args), *gate])


@pytest.fixture(scope="module")
def digits_int8(tmp_path_factory):
    out = tmp_path_factory.mktemp("q") / "digits-int8.onnx"
    res = _quantize(DIGITS, "-o", out, "--json", out.with_suffix(".json"))
    assert res.exit_code == 0, res.output
    return out, json.loads(out.with_suffix(".json").read_text())


def test_identity_int8_on_digits_is_written_with_its_proof(digits_int8):
    out, report = digits_int8
    proof = report["proof"]
    assert report["precision"] == "int8" and report["method"] == "identity" and proof["ok"]
    assert proof["agreement"] >= 0.99 and proof["accuracy_drop"] <= 0.5 and proof["images"] == 360
    assert "held-out" in proof["data"] and "128 training images" in report["calibration"]
    art = read_onnx(out)
    meta = art.metadata
    assert meta["dirac_deploy.graph"] == "quantized-int8" and meta["dirac_deploy.method"] == "identity"
    assert json.loads(meta["dirac_deploy.low_precision_proof"])["agreement"] == proof["agreement"]
    ops = {n.op_type for n in art.model.graph.node}
    assert {"QuantizeLinear", "DequantizeLinear", "Conv", "Add"} <= ops  # the identity is an Add of the input
    # what ONNX Runtime really runs: every conv the plan quantized is fused to int8
    int8_convs = sum(layer["form"] != "fp32" for layer in proof["layers"])
    assert proof["runtime_ops"]["conv"] == {"int8": int8_convs, "fp32": len(proof["layers"]) - int8_convs}
    speed = proof["speed"]
    assert speed["runtime"] == "onnxruntime" and [r["batch"] for r in speed["rows"]] == [1, 8]
    assert all(r["fp32_ms"] > 0 and r["artifact_ms"] > 0 for r in speed["rows"]) and "vnni" in speed["cpu"]
    check_artifact(art)  # the audit for quantized graphs and the artifact's own probe, in a fresh ORT session


def test_per_layer_report_names_chain_layers_and_their_form(digits_int8):
    _, report = digits_int8
    layers = report["proof"]["layers"]
    assert [layer["name"] for layer in layers][:2] == ["stem_conv", "group0_block0_conv"]
    assert {layer["form"] for layer in layers} <= {"int8", "int8-residual", "fp32"}
    assert layers[0]["form"] in ("int8", "fp32")  # the stem holds no identity: never the residual form
    assert sum(layer["form"] == "int8-residual" for layer in layers) >= len(layers) // 2
    assert all(layer["output_sqnr_db"] is not None and layer["output_sqnr_db"] > 10 for layer in layers)
    assert layers[0]["identity_dominance"] == 0  # the stem has no identity
    assert all(layer["identity_dominance"] > 1 for layer in layers[1:])


def test_deliberately_bad_threshold_refuses_and_writes_nothing(tmp_path):
    out = tmp_path / "q.onnx"
    res = _quantize(DIGITS, "-o", out, "--min-sqnr-db", "90")
    assert res.exit_code == 1
    assert "misses its thresholds" in res.output and "nothing written" in res.output
    assert "Layers losing the most: group" in res.output and "Traceback" not in res.output
    assert list(tmp_path.iterdir()) == []


def test_naive_int8_loses_precision_where_identity_int8_does_not(tmp_path, digits_int8):
    """ORT's quantize_static defaults against the identity-aware form on the same data. How much naive int8 loses
    depends on the CPU (without VNNI ORT's u8s8 kernels saturate; with VNNI it passes the agreement gate on the
    digits), so the comparison is the logit SQNR gap, which holds on both kinds."""
    res = _quantize(DIGITS, "-o", tmp_path / "naive.onnx", "--method", "naive", "--min-agreement", "0",
                    "--max-accuracy-drop", "100", "--min-sqnr-db", "0", "--json", "-")
    assert res.exit_code == 0, res.output
    naive = json.loads(res.output)["proof"]
    identity = digits_int8[1]["proof"]
    assert naive["logit_sqnr_db"] + 4 < identity["logit_sqnr_db"]
    assert naive["accuracy_drop"] >= identity["accuracy_drop"]
    res = _quantize(DIGITS, "-o", tmp_path / "refused.onnx", "--method", "naive", "--min-sqnr-db",
                    f"{identity['logit_sqnr_db'] - 2:.1f}")
    assert res.exit_code == 1 and "misses its thresholds" in res.output  # the floor identity int8 clears
    assert not (tmp_path / "refused.onnx").exists()


def test_wide_noisy_model_passes_identity_int8(tmp_path):
    """The second embedded model: widths 32/64/128, fp32 held-out accuracy below 100%."""
    out = tmp_path / "noisy-int8.onnx"
    res = _quantize(NOISY, "-o", out, "--json", "-")
    assert res.exit_code == 0, res.output
    proof = json.loads(res.output)["proof"]
    assert 0.85 < proof["accuracy_fp32"] < 1.0
    assert proof["agreement"] >= 0.99 and proof["accuracy_drop"] <= 0.5
    assert max(layer["identity_dominance"] for layer in proof["layers"]) > 30  # the identity dominates
    assert out.is_file()


def test_fp16_from_an_exported_onnx(tmp_path):
    onnx_path = tmp_path / "m.onnx"
    assert CliRunner().invoke(main, ["export", str(DIGITS), "--onnx", str(onnx_path)]).exit_code == 0
    out = tmp_path / "m16.onnx"
    res = _quantize(onnx_path, "-o", out, "--precision", "fp16", "--json", "-")
    assert res.exit_code == 0, res.output
    proof = json.loads(res.output)["proof"]
    assert proof["agreement"] >= 0.995 and proof["logit_sqnr_db"] > 40
    assert any(t.data_type == onnx.TensorProto.FLOAT16 for t in onnx.load(str(out)).graph.initializer)


def test_bad_inputs_are_one_line_and_write_nothing(tmp_path):
    cases = [
        (["--calib", str(tmp_path / "missing.npz")], "no such file or directory"),
        (["--precision", "bf16", "--target", "onnxruntime"], "is not built"),
        (["--min-speedup", "-1"], "--min-speedup"),
        (["--precision", "int8", "--target", "onnxruntime", "-o", str(tmp_path / "x.xml")], "written as .onnx"),
    ]
    for extra, needle in cases:
        res = _quantize(DIGITS, "-o", tmp_path / "q.onnx", *extra)
        assert res.exit_code != 0 and needle in res.output, res.output
        assert "Traceback" not in res.output
    np.save(tmp_path / "wrong.npy", np.zeros((4, 3, 8, 8), np.float32))
    res = _quantize(DIGITS, "-o", tmp_path / "q.onnx", "--eval", tmp_path / "wrong.npy")
    assert res.exit_code == 1 and "expected uint8 images or float32 [N, 3, 32, 32]" in res.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["wrong.npy"]


def test_calibration_from_an_npz_of_uint8_images(tmp_path):
    images, labels = data.load_noisy("holdout")
    np.savez(tmp_path / "eval.npz", images=images[:120], labels=labels[:120])
    res = _quantize(NOISY, "-o", tmp_path / "q.onnx", "--eval", tmp_path / "eval.npz", "--json", "-")
    assert res.exit_code == 0, res.output
    proof = json.loads(res.output)["proof"]
    assert proof["images"] == 120 and proof["accuracy"] is not None and "labelled" in proof["data"]


def test_tensorrt_target_places_qdq_on_both_inputs_of_each_residual_add(tmp_path):
    """The QDQ placement TensorRT fuses (never run here: TensorRT cannot be installed), checked on the graph."""
    from onnx import numpy_helper

    out = tmp_path / "trt.onnx"
    res = _quantize(DIGITS, "-o", out, "--target", "tensorrt", "--json", "-")
    assert res.exit_code == 0, res.output
    report = json.loads(res.output)
    assert report["int8_types"] == "s8s8" and report["proof"]["speed"]["status"].startswith("not timed")
    assert any("TensorRT never ran here" in n for n in report["proof"]["notes"])
    graph = onnx.load(str(out)).graph
    producer = {o: n.op_type for n in graph.node for o in n.output}
    adds = [n for n in graph.node if n.op_type == "Add"]
    assert len(adds) == sum(layer["form"] == "int8-residual" for layer in report["proof"]["layers"]) > 0
    assert all(producer.get(i) == "DequantizeLinear" for n in adds for i in n.input)
    zero_points = [numpy_helper.to_array(t) for t in graph.initializer if t.name.endswith("zero_point")]
    assert zero_points and not any(z.any() for z in zero_points)  # symmetric: every zero point 0
    assert {z.dtype for z in zero_points} == {np.dtype(np.int8), np.dtype(np.int32)}  # s8 tensors, int32 biases


def test_identity_dominance_and_why_plain_int8_erases_the_learned_part():
    rng = np.random.default_rng(0)
    c = 128
    w = 0.01 * rng.standard_normal((c, c, 3, 3)) / np.sqrt(9 * c)
    w[np.arange(c), np.arange(c), 1, 1] += 1.0
    dom = identity_dominance(w)
    assert dom.shape == (c,) and np.median(dom) > 127
    _, r = split_diag(w)
    _, plain_rest = split_diag(fake_int8(w))  # what plain per-channel int8 keeps of the learned part
    plain_err = np.linalg.norm(r - plain_rest)
    split_err = np.linalg.norm(r - fake_int8(r))
    assert plain_err > 10 * split_err


def test_inspect_layers_shows_identity_dominance(tmp_path):
    res = CliRunner().invoke(main, ["inspect", str(DIGITS), "--layers", "--json", "-"])
    assert res.exit_code == 0, res.output
    layers = json.loads(res.output)["layers"]
    assert layers[0]["identity_dominance"] == 0 and layers[1]["identity_dominance"] > 1
    assert all(layer["identity_dominance_max"] >= layer["identity_dominance"] for layer in layers)
    res = CliRunner().invoke(main, ["inspect", str(DIGITS), "--layers"])
    assert "id. dominance" in res.output


@needs_openvino
def test_openvino_int8_ir_is_written_and_served(tmp_path):
    from dirac_deploy.serve.model import ModelSource
    from dirac_deploy.serve_files import load_served_model

    xml = tmp_path / "digits-int8.xml"
    res = _quantize(DIGITS, "-o", xml, "--json", "-")  # .xml: OpenVINO, and the identity method by default
    assert res.exit_code == 0, res.output
    report = json.loads(res.output)
    proof = report["proof"]
    # 7-bit weights where the CPU has no VNNI (its u8 x s8 pair sums would saturate at 8 bits)
    types = "u8s8" if report["cpu"]["vnni"] else "u8s7"
    assert (report["target"], report["method"], report["int8_types"]) == ("openvino", "identity", types)
    assert proof["agreement"] >= 0.99 and proof["speed"]["runtime"] == "openvino"
    # OpenVINO's runtime model: every conv the plan quantized runs in int8, and the fc too
    ops = proof["runtime_ops"]["conv"]
    assert sum(ops.values()) == report["convs"]
    assert ops["int8"] == report["convs"] - report["convs_fp32"] > 0
    assert proof["runtime_ops"]["gemm"]["int8"] == 1
    assert any(layer["form"] == "int8-residual" for layer in proof["layers"])
    assert xml.is_file() and xml.with_suffix(".bin").is_file()
    served = load_served_model(ModelSource("d", xml), "openvino")
    assert served.info["verified"] == "parity probe" and served.info["precision"] == "int8"
    assert served.input_shape == (3, 32, 32) and served.num_classes == 10
    x, y = data.load_holdout()
    logits = served.infer(x[:16].numpy())
    assert (logits.argmax(1) == y[:16].numpy()).mean() >= 0.9
    # a tampered weights file fails the IR's own probe at start
    blob = bytearray(xml.with_suffix(".bin").read_bytes())
    for i in range(0, len(blob), 7):
        blob[i] ^= 0x55
    xml.with_suffix(".bin").write_bytes(bytes(blob))
    with pytest.raises(Exception, match="does not reproduce|cannot"):
        load_served_model(ModelSource("d", xml), "openvino")


@needs_openvino
def test_nncf_stays_available_as_a_method(tmp_path):
    res = _quantize(DIGITS, "-o", tmp_path / "n.xml", "--method", "nncf", "--json", "-")
    assert res.exit_code == 0, res.output
    report = json.loads(res.output)
    assert report["method"] == "nncf" and report["proof"]["agreement"] >= 0.99
    assert report["proof"]["runtime_ops"]["conv"]["int8"] > 0


@needs_openvino
def test_openvino_serves_onnx_and_checkpoints_like_onnxruntime(digits_int8):
    from dirac_deploy.serve.model import ModelSource
    from dirac_deploy.serve_files import load_served_model

    out, _ = digits_int8
    x = np.random.default_rng(3).standard_normal((4, 3, 32, 32)).astype(np.float32)
    ort = load_served_model(ModelSource("a", DIGITS), "onnxruntime").infer(x)
    ov = load_served_model(ModelSource("b", DIGITS), "openvino").infer(x)
    np.testing.assert_allclose(ov, ort, rtol=1e-3, atol=1e-3 * np.abs(ort).max())
    q = load_served_model(ModelSource("c", out), "openvino")  # the QDQ int8 ONNX, audited and probed
    assert q.info["verified"] == "audit and parity probe" and q.infer(x).shape == (4, 10)


@needs_openvino
def test_bf16_says_what_this_cpu_runs(tmp_path):
    from dirac_deploy.runtimes.openvino import bf16_supported

    xml = tmp_path / "bf16.xml"
    res = _quantize(DIGITS, "-o", xml, "--precision", "bf16", "--json", "-")
    assert res.exit_code == 0, res.output
    proof = json.loads(res.output)["proof"]
    assert proof["agreement"] >= 0.995
    if not bf16_supported():
        assert any("runs the model in fp32" in n for n in proof["notes"])
    else:
        assert proof["logit_sqnr_db"] < 80  # bf16 arithmetic is visible in the logits


def test_bench_low_precision_rows(tmp_path):
    out = tmp_path / "b.json"
    res = CliRunner().invoke(main, ["bench", str(DIGITS), "--backends", "onnxruntime", "--batch", "1", "--rounds", "2",
                                    "--iters", "4", "--max-seconds", "0.5", "--precision", "int8,fp16,bf16",
                                    "--json", str(out), "--no-plot"])
    assert res.exit_code == 0, res.output
    doc = json.loads(out.read_text())
    rows = {r["name"]: r for r in doc["lowp_rows"]}
    ref = rows["fp32-onnxruntime"]
    assert ref["status"] == "ok" and ref["speedup_vs_fp32_ort"] is None and doc["version"] == 4
    for name in ("int8-identity-onnxruntime", "int8-naive-onnxruntime", "fp16-onnxruntime"):
        r = rows[name]
        assert r["status"] == "ok" and r["ms"] > 0 and r["speedup_vs_fp32_ort"]["median"] > 0
        # the direction of every ratio in the file: t_reference / t_artifact (> 1: the artifact is faster)
        assert abs(np.log(r["speedup_vs_fp32_ort"]["median"]) - np.log(ref["ms"] / r["ms"])) < 0.3
        assert 0 <= r["quality"]["agreement"] <= 1 and r["quality"]["images"] == 360
    assert rows["int8-identity-onnxruntime"]["quality"]["agreement"] >= 0.99
    # every int8 form the registry builds has its row: what really runs in int8 is counted, TensorRT is skipped
    assert rows["int8-identity-onnxruntime"]["quality"]["runtime_ops"]["conv"]["int8"] > 0
    assert rows["int8-identity-tensorrt"]["status"].startswith("skipped: ") and "TensorRT" in rows[
        "int8-identity-tensorrt"]["status"]
    if available("openvino"):
        assert rows["int8-naive-openvino"]["status"] == "ok"
        assert rows["int8-naive-openvino"]["quality"]["runtime_ops"]["conv"]["int8"] > 0
        identity = rows["int8-identity-openvino"]
        assert identity["status"] == "ok" and identity["quality"]["runtime_ops"]["conv"]["int8"] > 0
    bf16 = rows["bf16-openvino"]
    assert bf16["status"] == "ok" or bf16["status"].startswith("skipped: ")
    assert doc["env"]["lowp"]["evaluation"].startswith("embedded digits")
    assert "Low precision" in res.output and "speed-up vs fp32 ORT" in res.output
    # the headline rows ignore the low-precision records
    assert {r["backend"] for r in doc["rows"]} == {"onnxruntime"} and len(doc["rows"]) == 1


def test_an_int8_artifact_in_which_nothing_runs_in_int8_is_refused(tmp_path, monkeypatch):
    """The runtime's own count decides: no conv in int8 there means an fp32 model with extra nodes, refused
    before it is timed or written."""
    from dirac_deploy.quantize import run

    monkeypatch.setattr(run, "runtime_ops", lambda _target, _model: {"conv": {"int8": 0, "bf16": 7},
                                                                      "gemm": {"int8": 0, "bf16": 1}})
    out = tmp_path / "q.onnx"
    with pytest.raises(run.NothingInInt8Error, match=r"nothing runs in int8.*7 in bf16.*`precision='bf16'`"):
        run.quantize_file(DIGITS, out, min_speedup=0)
    assert list(tmp_path.iterdir()) == []


def test_the_layer_table_says_what_the_runtime_runs():
    from dirac_deploy.quantize.layer_table import label_runtime_precision as _label_runtime_precision
    from dirac_deploy.quantize.proof import LayerError

    layers = [LayerError("a", "fp32", 30.0), LayerError("b", "int8-residual", 28.0), LayerError("c", "int8", 27.0)]
    _label_runtime_precision(layers, {"int8": 2, "bf16": 1})
    assert [la.runs_in for la in layers] == ["bf16", "int8", "int8"]  # a kept layer on an AMX CPU: not "fp32"
    _label_runtime_precision(layers, {"int8": 1, "fp32": 2})
    assert [la.runs_in for la in layers] == ["?", "?", "?"]  # the count cannot say which


def test_notes_name_layers_as_the_table_does_and_fp32_layers_are_never_the_worst():
    from dirac_deploy.quantize.layer_table import renamed_note as _renamed
    from dirac_deploy.quantize.proof import LayerError, LowPrecisionProof

    renamed = {"node_conv2d_1": "group0_block0_conv", "node_conv2d_10": "group2_block1_conv"}
    note = "kept in fp32: node_conv2d_1, node_conv2d_10 (and node_conv2d_100, not a conv of this chain)"
    assert _renamed(note, renamed) == ("kept in fp32: group0_block0_conv, group2_block1_conv (and node_conv2d_100, "
                                       "not a conv of this chain)")
    fields = {f: None for f in LowPrecisionProof.__dataclass_fields__}
    proof = LowPrecisionProof(**{**fields, "layers": [LayerError("a", "fp32", 5.0), LayerError("b", "int8", 20.0),
                                                       LayerError("c", "int8-residual", 30.0)]})
    assert [la.name for la in proof.worst_layers()] == ["b", "c"]  # "a" only inherits its input's error

"""quantize.rescale: the unit-residual form is the same function as the chain in fp32, carries the scale through
ReLU / pooling / Gemm, handles widening convs and non-positive diagonals, and refuses what it cannot rescale."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto, helper, numpy_helper

from dirac_deploy import data
from dirac_deploy.checkpoint import LoadOptions
from dirac_deploy.export.from_file import verified_onnx
from dirac_deploy.opener import load_model
from dirac_deploy.quantize.rescale import RescaleError, output_units, unit_residual, unit_residual_weight
from dirac_deploy.runtimes import logits

from reference import as_v1_params_stats, define_params_v1

RNG = np.random.default_rng(0)


def _dirac_weight(out: int, inp: int, diag: np.ndarray) -> np.ndarray:
    w = 0.05 * RNG.standard_normal((out, inp, 3, 3)).astype(np.float32)
    w[np.arange(inp), np.arange(inp), 1, 1] += diag
    return w


def _chain(*, diag_first: np.ndarray, extra_op: str | None = None) -> onnx.ModelProto:
    """stem 3->4 (stride 2) -> ReLU -> conv 4->4 -> ReLU -> MaxPool -> conv 4->8 (widening) -> ReLU
    -> [extra op] -> GlobalAveragePool -> Flatten -> Gemm 8->5."""
    inits = [numpy_helper.from_array(0.3 * RNG.standard_normal((4, 3, 3, 3)).astype(np.float32), "w0"),
             numpy_helper.from_array(RNG.standard_normal(4).astype(np.float32), "b0"),
             numpy_helper.from_array(_dirac_weight(4, 4, diag_first), "w1"),
             numpy_helper.from_array(RNG.standard_normal(4).astype(np.float32), "b1"),
             numpy_helper.from_array(_dirac_weight(8, 4, np.array([0.5, 1.5, 2.0, 0.8], np.float32)), "w2"),
             numpy_helper.from_array(RNG.standard_normal((5, 8)).astype(np.float32), "fc_w"),
             numpy_helper.from_array(RNG.standard_normal(5).astype(np.float32), "fc_b")]
    conv = dict(kernel_shape=[3, 3], pads=[1, 1, 1, 1])
    nodes = [helper.make_node("Conv", ["input", "w0", "b0"], ["c0"], name="stem", strides=[2, 2], **conv),
             helper.make_node("Relu", ["c0"], ["r0"], name="relu0"),
             helper.make_node("Conv", ["r0", "w1", "b1"], ["c1"], name="conv1", **conv),
             helper.make_node("Relu", ["c1"], ["r1"], name="relu1"),
             helper.make_node("MaxPool", ["r1"], ["p1"], name="pool1", kernel_shape=[2, 2], strides=[2, 2]),
             helper.make_node("Conv", ["p1", "w2"], ["c2"], name="conv2_widen", **conv),  # no bias
             helper.make_node("Relu", ["c2"], ["r2"], name="relu2")]
    last = "r2"
    if extra_op == "Neg":  # what NCReLU's negative half needs: a negative scale does not commute with ReLU
        nodes.append(helper.make_node("Neg", ["r2"], ["n2"], name="ncrelu_neg"))
        last = "n2"
    nodes += [helper.make_node("GlobalAveragePool", [last], ["g"], name="gap"),
              helper.make_node("Flatten", ["g"], ["f"], name="flatten"),
              helper.make_node("Gemm", ["f", "fc_w", "fc_b"], ["logits"], name="fc", transB=1)]
    graph = helper.make_graph(nodes, "chain", [helper.make_tensor_value_info("input", TensorProto.FLOAT, [None, 3, 16, 16])],
                              [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [None, 5])], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def _same(a: onnx.ModelProto, b: onnx.ModelProto, shape=(4, 3, 16, 16)) -> None:
    x = RNG.standard_normal(shape).astype(np.float32)
    ya, yb = logits("onnxruntime", a, x), logits("onnxruntime", b, x)
    np.testing.assert_allclose(yb, ya, rtol=1e-4, atol=1e-5 * np.abs(ya).max())


def test_output_units_and_residual_weight():
    w = _dirac_weight(6, 4, np.array([2.0, -0.5, 0.25, 1.0], np.float32))
    d, bad = output_units(w)
    assert bad == 1  # channel 1's diagonal is negative: the median positive diagonal instead
    np.testing.assert_allclose(d[[0, 2, 3]], w[[0, 2, 3], [0, 2, 3], 1, 1])
    assert d[1] == d[4] == d[5] == np.median(w[[0, 2, 3], [0, 2, 3], 1, 1])  # and for the widened outputs
    r = unit_residual_weight(w.astype(np.float64), d, residual=True)
    assert np.allclose(r[[0, 2, 3], [0, 2, 3], 1, 1], 0)  # the identity taken out where the diagonal is d
    assert r[1, 1, 1, 1] == pytest.approx(w[1, 1, 1, 1] / d[1] - 1)  # kept in the weight (non-positive)


def test_chain_with_widening_conv_is_exact_and_the_stem_carries_no_identity():
    model = _chain(diag_first=np.array([1.2, 0.7, 2.5, 0.9], np.float32))
    got = unit_residual(model)
    assert got.carriers == ("conv1", "conv2_widen") == got.residual and got.nonpositive == {}
    ops = [n.op_type for n in got.model.graph.node]
    assert ops.count("Add") == 2 and ops.count("Pad") == 1  # the widening conv's identity is zero-padded
    onnx.checker.check_model(got.model)
    _same(model, got.model)
    _same(model, unit_residual(model, residual={"conv1"}).model)  # rescaled only, for the others
    _same(model, unit_residual(model, residual=set()).model)


def test_non_positive_diagonals_stay_in_the_weight_and_stay_exact():
    model = _chain(diag_first=np.array([1.2, -0.7, 0.0, 0.9], np.float32))
    got = unit_residual(model)
    assert got.nonpositive == {"conv1": 2}
    _same(model, got.model)


def test_refuses_an_op_that_does_not_commute_with_a_positive_scale():
    with pytest.raises(RescaleError, match=r"node 'ncrelu_neg' \(Neg\).*`ncrelu='absorb'`"):
        unit_residual(_chain(diag_first=np.ones(4, np.float32), extra_op="Neg"))


def test_embedded_digits_chain_is_exact():
    fp32 = verified_onnx(load_model(data.embedded_checkpoint())).model
    got = unit_residual(fp32)
    assert len(got.residual) == len(got.carriers) > 0
    _same(fp32, got.model, shape=(4, 3, 32, 32))


@pytest.mark.parametrize("ncrelu", ["keep", "absorb"])
def test_v1_chains_keep_is_refused_absorb_is_exact(tmp_path, ncrelu):
    params = define_params_v1("cifar", 10, seed=8)
    torch.save(as_v1_params_stats(params), tmp_path / "v1.pt7")
    fp32 = verified_onnx(load_model(tmp_path / "v1.pt7", LoadOptions(ncrelu=ncrelu))).model
    if ncrelu == "keep":
        with pytest.raises(RescaleError, match="cannot carry the per-channel scale through node"):
            unit_residual(fp32)
    else:
        _same(fp32, unit_residual(fp32).model, shape=(2, 3, 32, 32))

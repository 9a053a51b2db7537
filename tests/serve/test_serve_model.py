"""serve.model: which runtime each model runs on (MODEL@RUNTIME, --runtime, or the file's kind) and that every
model is checked before the first one loads."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from dirac_deploy import data
from dirac_deploy._optional import available
from dirac_deploy.cli import main
from dirac_deploy.errors import DiracDeployError
from dirac_deploy.serve.model import check_sources, parse_model_args
from dirac_deploy.serve_files import load_models

DIGITS = data.embedded_checkpoint()


@pytest.fixture(scope="module")
def artifacts(tmp_path_factory):
    d = tmp_path_factory.mktemp("served")
    assert CliRunner().invoke(main, ["export", str(DIGITS), "--onnx", str(d / "fp32.onnx")]).exit_code == 0
    if available("openvino"):
        res = CliRunner().invoke(main, ["quantize", str(d / "fp32.onnx"), "-o", str(d / "q.xml"), "--target",
                                        "openvino", "--precision", "fp32"])
        assert res.exit_code == 0, res.output
    return d


def test_model_arguments_name_their_runtime():
    got = parse_model_args(["a=x.onnx@openvino", "y.onnx", "w=w@v.onnx", "z.pth@torch"], runtime=None)
    assert [(s.name, str(s.path), s.runtime) for s in got] == [
        ("a", "x.onnx", "openvino"), ("y", "y.onnx", None), ("w", "w@v.onnx", None), ("z", "z.pth", "torch")]
    assert parse_model_args(["y.onnx"], runtime="openvino")[0].runtime == "openvino"


@pytest.mark.skipif(not available("openvino"), reason="needs OpenVINO (pip install '.[openvino]')")
def test_an_onnx_and_an_ir_are_served_side_by_side_each_on_its_runtime(artifacts):
    models = load_models([str(artifacts / "fp32.onnx"), str(artifacts / "q.xml")], None, 1)
    assert {m.name: m.runtime for m in models.values()} == {"fp32": "onnxruntime", "q": "openvino"}
    models = load_models([f"{artifacts / 'fp32.onnx'}@openvino"], None, 1)
    assert models["fp32"].runtime == "openvino"
    with pytest.raises(DiracDeployError, match="is an OpenVINO IR; serve it on openvino"):
        check_sources(parse_model_args([f"{artifacts / 'q.xml'}@onnxruntime"]))


def test_every_model_is_checked_before_the_first_loads(artifacts, tmp_path):
    loading = []
    for bad, needle in ((tmp_path / "missing.onnx", "no such file"), (f"{DIGITS}@nonsense", "no such file"),
                        (f"other={artifacts / 'fp32.onnx'}@torch", "is an ONNX graph; serve it on onnxruntime or openvino")):
        with pytest.raises(DiracDeployError, match=needle):
            load_models([str(artifacts / "fp32.onnx"), str(bad)], None, 1,
                        on_loading=lambda name, _path: loading.append(name))
    assert loading == []


def test_a_foreign_onnx_is_pointed_to_no_verify(tmp_path):
    """The user's own torch.onnx.export graph: serve, quantize and export say how to go on, and --no-verify
    serves it."""
    import torch

    from dirac_deploy.serve.model import ModelSource
    from dirac_deploy.serve_files import load_served_model

    net = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, padding=1), torch.nn.ReLU(), torch.nn.AdaptiveAvgPool2d(1),
                              torch.nn.Flatten(), torch.nn.Linear(8, 10)).eval()
    path = tmp_path / "mine.onnx"
    torch.onnx.export(net, torch.randn(1, 3, 32, 32), str(path), input_names=["input"], output_names=["logits"],
                      dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}}, dynamo=False)
    for cmd in (["serve", str(path), "--port", "0"], ["quantize", str(path), "-o", str(tmp_path / "q.onnx"),
                                                       "--calib", "random:200"],
                ["export", str(path), "--onnx", str(tmp_path / "e.onnx")]):
        res = CliRunner().invoke(main, cmd)
        assert res.exit_code == 1 and "--no-verify" in res.output, res.output
    served = load_served_model(ModelSource("mine", path), verify=False)
    assert served.infer(torch.randn(2, 3, 32, 32).numpy()).shape == (2, 10)


@pytest.mark.skipif(not available("openvino"), reason="needs OpenVINO (pip install '.[openvino]')")
def test_an_ir_cannot_loosen_its_own_parity_check(artifacts, tmp_path):
    import html
    import json
    import re
    import shutil

    from dirac_deploy.artifacts.digest import ir_content_sha256
    from dirac_deploy.serve.model import ModelSource
    from dirac_deploy.serve_files import load_served_model

    text = (artifacts / "q.xml").read_text().replace('<probe_rtol value="0.05" />', '<probe_rtol value="inf" />')
    m = re.search(r'<parity_probe value="([^"]*)"', text)
    probe = json.loads(html.unescape(m.group(1)))
    probe["logits"] = [[2 * v + 1 for v in row] for row in probe["logits"]]  # logits the IR does not compute
    text = text.replace(m.group(1), html.escape(json.dumps(probe), quote=True))
    xml = tmp_path / "q.xml"
    shutil.copy(artifacts / "q.bin", tmp_path / "q.bin")
    xml.write_text(text)
    with pytest.raises(DiracDeployError, match="edited after it was built"):  # its digest no longer matches
        load_served_model(ModelSource("q", xml))
    # the digest recomputed, as a deliberate attacker would: the probe and the tool's tolerance still hold
    digest = ir_content_sha256(text.encode(), (tmp_path / "q.bin").read_bytes())
    xml.write_text(re.sub(r'<content_sha256 value="[0-9a-f]*"', f'<content_sha256 value="{digest}"', text))
    with pytest.raises(DiracDeployError, match="does not reproduce"):
        load_served_model(ModelSource("q", xml))


@pytest.mark.skipif(not available("openvino"), reason="needs OpenVINO (pip install '.[openvino]')")
def test_ir_files_from_strangers_are_one_line_before_openvino_reads_them(artifacts, tmp_path):
    import os
    import shutil

    from dirac_deploy.serve.model import ModelSource
    from dirac_deploy.serve_files import load_served_model

    fifo = tmp_path / "fifo"
    fifo.mkdir()
    shutil.copy(artifacts / "q.xml", fifo / "q.xml")
    os.mkfifo(fifo / "q.bin")  # reading it would block forever
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "q.xml").write_text('<?xml version="1.0"?>\n<net name="x" version="11"><layers/><edges/></net>\n')
    (empty / "q.bin").write_bytes(b"")
    many = tmp_path / "many"
    many.mkdir()
    (many / "q.xml").write_text('<?xml version="1.0"?>\n<net name="x" version="11"><layers>'
                                + '<layer id="0" />' * 20_001 + "</layers></net>\n")
    (many / "q.bin").write_bytes(b"")
    for folder, needle in ((fifo, "not a regular file"), (empty, "one input and one output"), (many, "layers")):
        with pytest.raises(DiracDeployError, match=needle):
            load_served_model(ModelSource("q", folder / "q.xml"))


def test_connection_caps_fit_the_open_files_limit_for_both_listeners(monkeypatch):
    import resource

    from dirac_deploy.serve.limits import ServeLimits
    from dirac_deploy.serve.server import _within_open_files

    monkeypatch.setattr(resource, "getrlimit", lambda _which: (1024, 1024))
    assert _within_open_files(ServeLimits(max_connections=512), 1).max_connections == 512
    assert _within_open_files(ServeLimits(max_connections=512), 2).max_connections == (1024 - 64) // 2


def test_same_stem_files_get_distinct_default_names(tmp_path):
    (tmp_path / "q.onnx").write_bytes(b"x")
    got = parse_model_args([str(tmp_path / "q.onnx"), f"{tmp_path / 'q.pth'}@torch", str(tmp_path / "q.pt7")])
    assert [s.name for s in got] == ["q", "q-torch", "q-pt7"]
    with pytest.raises(DiracDeployError, match="two models are named 'q'"):  # a name given is never changed
        parse_model_args([str(tmp_path / "q.onnx"), f"q={tmp_path / 'q.pth'}"])


@pytest.mark.skipif(not available("openvino"), reason="needs OpenVINO (pip install '.[openvino]')")
def test_the_serving_docs_q_onnx_q_xml_command_serves_both(artifacts, tmp_path):
    """docs/serving.md: `serve q.onnx q.xml` (what `quantize -o q.onnx` then `-o q.xml` write) serves both,
    named q and q-openvino, each with the preprocessing a client needs in its metadata."""
    import json
    import shutil

    shutil.copy(artifacts / "fp32.onnx", tmp_path / "q.onnx")
    for f in ("q.xml", "q.bin"):
        shutil.copy(artifacts / f, tmp_path / f)
    models = load_models([str(tmp_path / "q.onnx"), str(tmp_path / "q.xml")], None, 1)
    assert {m.name: m.runtime for m in models.values()} == {"q": "onnxruntime", "q-openvino": "openvino"}
    for m in models.values():
        params = m.metadata()["parameters"]
        assert params["input_layout"] == "NCHW" and params["input_size"] == "32x32"
        assert json.loads(params["mean"]) == pytest.approx(list(data.DIGITS_MEAN))
        assert json.loads(params["std"]) == pytest.approx(list(data.DIGITS_STD))
        assert params["dynamic_batch_max_images"] == "1"
        m.instances.close()

"""What a newcomer trips over: conventions (--json, -q, python -m), every format in every command, exits, help."""

import json
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
import torch
from click.testing import CliRunner

from dirac_deploy.cli import main
from dirac_deploy.data import embedded_checkpoint

from serving import free_port, running_server

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("newcomer")
    r = CliRunner()
    assert r.invoke(main, ["fold", str(embedded_checkpoint()), "-o", str(d / "plain.pth")]).exit_code == 0
    assert r.invoke(main, ["export", str(d / "plain.pth"), "--onnx", str(d / "m.onnx")]).exit_code == 0
    return d


def test_json_reports_follow_their_schema(files, tmp_path):
    r = CliRunner()
    res = r.invoke(main, ["fold", str(embedded_checkpoint()), "-o", str(tmp_path / "p.pth"), "--json", "-"])
    fold = json.loads(res.stdout)
    assert fold["schema"] == "dirac-deploy/fold" and fold["version"] == 1 and fold["proof"]["ok"]
    assert fold["input"]["provenance"] == {"input_size": "checkpoint", "normalization": "checkpoint"}
    assert fold["input"]["mean"] == [0.3054] * 3 and fold["layers"]["conv"] == 7
    for path, kind in ((embedded_checkpoint(), "checkpoint"), (files / "plain.pth", "plain file"),
                       (files / "m.onnx", "onnx")):
        res = r.invoke(main, ["inspect", str(path), "--json", "-"])
        assert res.exit_code == 0, res.output
        doc = json.loads(res.stdout)
        assert doc["schema"] == "dirac-deploy/inspect" and doc["kind"] == kind
        assert doc["input"]["shape"] == [3, 32, 32]
    res = r.invoke(main, ["export", str(files / "plain.pth"), "--onnx", str(tmp_path / "x.onnx"), "--json",
                          str(tmp_path / "export.json")])
    doc = json.loads((tmp_path / "export.json").read_text())
    assert doc["schema"] == "dirac-deploy/export" and doc["folded"]["node_count"] == 19
    assert doc["written"] == [str(tmp_path / "x.onnx")] and "Exported" in res.stdout


def test_inspect_shows_what_plain_and_onnx_files_hold(files):
    res = CliRunner().invoke(main, ["inspect", str(files / "plain.pth")])
    assert res.exit_code == 0 and "Conv" not in res.stderr
    for word in ("plain file", "layers", "conv x7", "fold proof (recorded)", "parameters", "normalization"):
        assert word in res.stdout, word
    res = CliRunner().invoke(main, ["inspect", str(files / "m.onnx")])
    assert res.exit_code == 0
    for word in ("onnx", "Conv x7", "audit", "passed", "parity probe"):
        assert word in res.stdout, word


def test_provenance_marks_assumed_normalization(tmp_path):
    import reference

    torch.save(reference.as_flat_params(reference.define_params("cifar", 10, seed=1)), tmp_path / "c.pt7")
    res = CliRunner().invoke(main, ["inspect", str(tmp_path / "c.pt7")])
    assert "assumed: the CIFAR normalization of the original train.py" in res.stdout
    res = CliRunner().invoke(main, ["fold", str(tmp_path / "c.pt7"), "-o", str(tmp_path / "p.pth"), "--mean",
                                    "0.5,0.5,0.5", "--std", "0.2,0.2,0.2", "--json", "-"])
    doc = json.loads(res.stdout)
    assert doc["input"]["provenance"]["normalization"] == "given" and doc["input"]["mean"] == [0.5] * 3


def test_quiet_prints_nothing_but_errors(files, tmp_path):
    res = CliRunner().invoke(main, ["-q", "fold", str(embedded_checkpoint()), "-o", str(tmp_path / "p.pth")])
    assert res.exit_code == 0 and res.stdout == "" and (tmp_path / "p.pth").exists()
    res = CliRunner().invoke(main, ["-q", "fold", str(tmp_path / "none.pth"), "-o", str(tmp_path / "q.pth")])
    assert res.exit_code == 1 and "no such file" in res.stderr


def test_triton_repo_alone_reports_no_temporary_path(files, tmp_path):
    res = CliRunner().invoke(main, ["export", str(files / "plain.pth"), "--triton-repo", str(tmp_path / "repo")])
    assert res.exit_code == 0
    assert "/tmp/dirac-deploy-" not in res.stdout and str(tmp_path / "repo") in res.stdout


def test_python_dash_m_and_fast_help():
    for args in ([sys.executable, "-m", "dirac_deploy", "--help"], [sys.executable, "-m", "dirac_deploy.cli", "--help"]):
        proc = subprocess.run(args, capture_output=True, text=True, timeout=60)
        assert proc.returncode == 0 and "fold" in proc.stdout
    code = "import sys, dirac_deploy.cli; print([m for m in ('torch', 'onnx', 'onnxruntime') if m in sys.modules])"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.stdout.strip() == "[]"  # --help loads no torch: it answers at once


def test_ctrl_c_stops_serve_with_exit_zero(files):
    with running_server(str(files / "m.onnx")) as (url, proc):
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=30) == 0
        out, err = proc.stdout.read(), proc.stderr.read()
        assert "Aborted" not in out + err and "Traceback" not in err and "stopped" in out


def test_get_model_config_over_http_and_grpc(files):
    import tritonclient.grpc as tgrpc
    import tritonclient.http as thttp

    grpc_port = free_port()
    with running_server(str(files / "m.onnx"), "--grpc-port", str(grpc_port)) as (url, _):
        cfg = thttp.InferenceServerClient(url.removeprefix("http://")).get_model_config("m")
        assert cfg["name"] == "m" and cfg["platform"] == "onnxruntime_onnx" and cfg["input"][0]["dims"] == ["3", "32", "32"]
        g = tgrpc.InferenceServerClient(f"127.0.0.1:{grpc_port}").get_model_config("m")
        assert g.config.output[0].dims == [10] and g.config.max_batch_size > 0
        r = httpx.get(f"{url}/v2/models/nope/config", timeout=10)
        assert r.status_code == 404 and "error" in r.json()


def test_skipped_steps_keep_the_extra_in_their_install_hint(capsys):
    """Rich reads `[export]` as markup; the demo's skip lines must print the install command whole."""
    from dirac_deploy.cli.demo import _skipped
    from dirac_deploy.demo import DemoStep

    _skipped(DemoStep(skipped=[("ONNX export", "needs onnxruntime: pip install '.[export]'")]))
    assert "pip install '.[export]'" in capsys.readouterr().out

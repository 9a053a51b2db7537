"""The Open Inference Protocol server, as a real process on 127.0.0.1, driven by the official tritonclient."""

import json
import signal
import struct
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import numpy as np
import onnx
import pytest
import torch
import tritonclient.http as triton
import yaml
from click.testing import CliRunner

from dirac_deploy.cli import main
from dirac_deploy.data import embedded_checkpoint, load_holdout
from dirac_deploy.export.from_file import export_file
from dirac_deploy.runtimes.onnxruntime import session as ort_session

import reference
from serving import free_port, running_server

pytestmark = pytest.mark.e2e


ROOT = __import__("pathlib").Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    """A /models-like directory: the embedded default exported to digits.onnx (what the image serves)."""
    d = tmp_path_factory.mktemp("models")
    export_file(embedded_checkpoint(), d / "digits.onnx")
    return d


@pytest.fixture(scope="module")
def endpoints(model_dir):
    # The same command the Docker image runs (a directory of models), plus a .pth served under a given name.
    grpc_port = free_port()
    with running_server(str(model_dir), f"ckpt={embedded_checkpoint()}", "--max-body-mb", "1",
                        "--grpc-port", str(grpc_port)) as (url, proc):
        yield url, f"127.0.0.1:{grpc_port}"


@pytest.fixture(scope="module")
def server(endpoints):
    return endpoints[0]


@pytest.fixture
def grpc_client(endpoints):
    import tritonclient.grpc as tgrpc

    c = tgrpc.InferenceServerClient(endpoints[1])
    yield c
    c.close()


@pytest.fixture(scope="module")
def expected(model_dir):
    """In-process ONNX Runtime on the same file: what every served answer must equal."""
    session = ort_session(onnx.load(model_dir / "digits.onnx"), threads=1)
    return lambda x: session.run(["logits"], {"input": x})[0]


@pytest.fixture
def client(server):
    c = triton.InferenceServerClient(server.removeprefix("http://"), network_timeout=30.0)
    yield c
    c.close()


def _x(batch=2, seed=0):
    return np.random.default_rng(seed).standard_normal((batch, 3, 32, 32)).astype(np.float32)


def _input(x, binary=True):
    inp = triton.InferInput("input", list(x.shape), "FP32")
    inp.set_data_from_numpy(x, binary_data=binary)
    return inp


def test_health_and_metadata(server, client):
    assert client.is_server_live() and client.is_server_ready()
    assert client.is_model_ready("digits") and client.is_model_ready("ckpt")
    assert "binary_tensor_data" in client.get_server_metadata()["extensions"]
    meta = client.get_model_metadata("digits")
    assert meta["inputs"] == [{"name": "input", "datatype": "FP32", "shape": [-1, 3, 32, 32]}]
    assert meta["outputs"] == [{"name": "logits", "datatype": "FP32", "shape": [-1, 10]}]
    assert httpx.get(f"{server}/v2/models/nope/ready").status_code == 404


def test_tritonclient_default_binary_call(client, expected):
    x = _x(3)
    res = client.infer("digits", [_input(x)])
    np.testing.assert_allclose(res.as_numpy("logits"), expected(x), rtol=1e-6, atol=1e-6)


def test_tritonclient_json_and_requested_outputs(client, expected):
    x = _x(2, seed=1)
    res = client.infer("digits", [_input(x, binary=False)])
    np.testing.assert_allclose(res.as_numpy("logits"), expected(x), rtol=1e-5, atol=1e-5)
    for binary in (True, False):
        res = client.infer("digits", [_input(x)], outputs=[triton.InferRequestedOutput("logits", binary_data=binary)])
        np.testing.assert_allclose(res.as_numpy("logits"), expected(x), rtol=1e-5, atol=1e-5)


def test_top_k_returns_indices_and_scores(client, expected):
    x, _ = load_holdout()
    x = x[:4].numpy()
    res = client.infer("digits", [_input(x)], parameters={"top_k": 3})
    idx, scores = res.as_numpy("top_k_indices"), res.as_numpy("top_k_scores")
    logits = expected(x)
    assert idx.shape == (4, 3) and idx.dtype == np.int64
    assert (idx == np.argsort(-logits, axis=1)[:, :3]).all()
    assert (np.diff(scores, axis=1) <= 0).all() and (scores > 0).all() and (scores.sum(1) <= 1 + 1e-6).all()


def test_pth_model_served_equals_onnx(client, expected):
    x = _x(2, seed=2)
    np.testing.assert_allclose(client.infer("ckpt", [_input(x)]).as_numpy("logits"), expected(x), rtol=1e-4, atol=1e-4)


def _binary_request(x: np.ndarray, header_extra=None, declared_size=None, header_length=None):
    header = {"inputs": [{"name": "input", "shape": list(x.shape), "datatype": "FP32",
                          "parameters": {"binary_data_size": declared_size or x.nbytes}}]}
    header.update(header_extra or {})
    head = json.dumps(header).encode()
    return head + x.tobytes(), {"Inference-Header-Content-Length": str(header_length or len(head))}


def _bad_requests():
    x = _x(1)
    good_json = {"inputs": [{"name": "input", "shape": [1, 3, 32, 32], "datatype": "FP32", "data": x.ravel().tolist()}]}
    yield "unknown model", "/v2/models/nope/infer", json.dumps(good_json).encode(), {}, 404, "unknown model"
    bad = json.loads(json.dumps(good_json))
    bad["inputs"][0]["datatype"] = "INT32"
    yield "datatype", "digits", json.dumps(bad).encode(), {}, 400, "must be FP32"
    bad = json.loads(json.dumps(good_json))
    bad["inputs"][0]["shape"] = [3, 32, 32]
    bad["inputs"][0]["data"] = x.ravel().tolist()
    yield "rank", "digits", json.dumps(bad).encode(), {}, 400, "expects [-1, 3, 32, 32]"
    bad = json.loads(json.dumps(good_json))
    bad["inputs"][0]["shape"] = [1, 3, 16, 64]
    yield "shape", "digits", json.dumps(bad).encode(), {}, 400, "expects [-1, 3, 32, 32]"
    bad = json.loads(json.dumps(good_json))
    bad["inputs"][0]["data"] = bad["inputs"][0]["data"][:-5]
    yield "element count", "digits", json.dumps(bad).encode(), {}, 400, "elements do not match shape"
    yield "malformed json", "digits", b'{"inputs": [', {}, 400, "malformed JSON"
    body, headers = _binary_request(x, declared_size=x.nbytes - 4)
    yield "binary size", "digits", body, headers, 400, "binary_data_size"
    body, _ = _binary_request(x)
    yield "missing header", "digits", body, {}, 400, "malformed JSON"
    body, _ = _binary_request(x)
    yield "header not int", "digits", body, {"Inference-Header-Content-Length": "abc"}, 400, "not an integer"
    yield "header too long", "digits", body, {"Inference-Header-Content-Length": str(len(body) + 10)}, 400, "the body has"
    body, headers = _binary_request(x)
    yield "trailing bytes", "digits", body + b"\0" * 8, headers, 400, "not accounted for"
    yield "top_k", "digits", json.dumps({**good_json, "parameters": {"top_k": 11}}).encode(), {}, 400, "top_k"
    big = _x(100)  # 1.2 MB > --max-body-mb 1
    body, headers = _binary_request(big)
    yield "too large", "digits", body, headers, 413, "exceeds the limit"


@pytest.mark.parametrize("case", list(_bad_requests()), ids=lambda c: c[0])
def test_bad_requests_get_4xx_json_and_server_keeps_working(server, client, expected, case):
    _, target, body, headers, status, fragment = case
    path = target if target.startswith("/") else f"/v2/models/{target}/infer"
    r = httpx.post(server + path, content=body, headers=headers, timeout=30)
    assert r.status_code == status, r.text
    assert fragment in r.json()["error"]
    x = _x(1, seed=5)
    np.testing.assert_allclose(client.infer("digits", [_input(x)]).as_numpy("logits"), expected(x), rtol=1e-6, atol=1e-6)


def test_bounded_load_loses_nothing(server, expected):
    """2,000 requests from 8 clients on 127.0.0.1: every one answered, every answer equal to in-process."""
    inputs = [_x(1 + i % 3, seed=i) for i in range(16)]
    refs = [expected(x) for x in inputs]
    failures = []
    deadline = time.monotonic() + 240

    def worker(w):
        c = triton.InferenceServerClient(server.removeprefix("http://"), network_timeout=30.0)
        try:
            for i in range(250):
                if time.monotonic() > deadline:
                    failures.append((w, i, "deadline"))
                    return
                k = (w * 250 + i) % len(inputs)
                got = c.infer("digits", [_input(inputs[k])]).as_numpy("logits")
                if not np.allclose(got, refs[k], rtol=1e-6, atol=1e-6):
                    failures.append((w, i, "mismatch"))
        except Exception as e:  # any transport error is a lost request
            failures.append((w, "error", repr(e)))
        finally:
            c.close()

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(worker, range(8)))
    assert failures == []


def test_metrics_count_requests_by_model_and_status(server, client):
    client.infer("digits", [_input(_x(1))])
    httpx.post(f"{server}/v2/models/digits/infer", content=b"{", timeout=10)
    text = httpx.get(f"{server}/metrics").text
    assert 'dirac_deploy_requests_total{model="digits",protocol="http",status="200"}' in text
    assert 'dirac_deploy_requests_total{model="digits",protocol="http",status="400"}' in text
    assert "dirac_deploy_request_duration_seconds_bucket" in text


@pytest.fixture(scope="module")
def slow_model(tmp_path_factory):
    """A model slow enough to have requests in flight: DiracNet-18 at 224 (about 2 s for a batch of 64, one thread)."""
    d = tmp_path_factory.mktemp("slow")
    torch.save(reference.as_params_stats(reference.define_params("imagenet", 18, 1.0, seed=3)), d / "slow.pth")
    export_file(d / "slow.pth", d / "slow.onnx")
    return d / "slow.onnx"


def test_health_answers_during_inference_and_sigterm_drains(slow_model):
    with running_server(str(slow_model)) as (url, proc):
        x = np.random.default_rng(0).standard_normal((64, 3, 224, 224)).astype(np.float32)
        body, headers = _binary_request(x)
        result = {}

        def slow_call():
            result["response"] = httpx.post(f"{url}/v2/models/slow/infer", content=body, headers=headers, timeout=60)

        t = threading.Thread(target=slow_call)
        t.start()
        time.sleep(0.5)  # upload done, inference running (about a second on one thread)
        t0 = time.monotonic()
        assert httpx.get(f"{url}/v2/health/ready", timeout=5).status_code == 200
        health_latency = time.monotonic() - t0
        assert "response" not in result, "the request finished too early to test anything; use a bigger batch"
        proc.send_signal(signal.SIGTERM)
        t.join(timeout=60)
        assert proc.wait(timeout=60) == 0
        r = result["response"]
        assert r.status_code == 200
        assert r.json()["outputs"][0]["shape"] == [64, 1000]  # JSON reply: no binary output was asked for
        assert health_latency < 5


def test_serve_bad_model_is_one_line(tmp_path):
    (tmp_path / "bad.onnx").write_bytes(b"not onnx")
    for args, fragment in ((["serve", str(tmp_path / "bad.onnx")], "not a valid ONNX model"),
                           (["serve", str(tmp_path / "missing.pth")], "no such file"),
                           (["serve", str(tmp_path)], "not a valid ONNX model"),
                           (["serve", f"a b={tmp_path / 'bad.onnx'}"], "bad model name")):
        res = CliRunner().invoke(main, [*args, "--port", "0"])
        assert res.exit_code == 1 and fragment in res.stderr, res.output
        assert len(res.stderr.strip().splitlines()) == 1


def test_dockerfile_passes_hadolint():
    import shutil
    import subprocess
    import sys
    from pathlib import Path

    exe = shutil.which("hadolint") or str(Path(sys.executable).with_name("hadolint"))
    proc = subprocess.run([exe, "--no-color", str(ROOT / "Dockerfile")], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    text = (ROOT / "Dockerfile").read_text()
    assert "USER 10001:10001" in text and 'ENTRYPOINT ["dirac-deploy", "serve"]' in text
    assert "HEALTHCHECK" in text and "/v2/health/ready" in text and "EXPOSE 8000" in text


def test_kserve_manifest_has_required_fields():
    doc = yaml.safe_load((ROOT / "deploy" / "kserve" / "inferenceservice.yaml").read_text())
    assert doc["apiVersion"] == "serving.kserve.io/v1beta1" and doc["kind"] == "InferenceService"
    assert doc["metadata"]["name"]
    container = doc["spec"]["predictor"]["containers"][0]
    assert container["name"] == "kserve-container" and container["image"]
    assert container["args"][0] == "/mnt/models"  # where KServe's storage initializer puts storageUri
    port = container["ports"][0]["containerPort"]
    assert str(port) in container["args"]
    assert container["readinessProbe"]["httpGet"] == {"path": "/v2/health/ready", "port": port}


def test_server_timing_header_reports_the_request_steps(server):
    body, headers = _binary_request(_x(1))
    r = httpx.post(f"{server}/v2/models/digits/infer", content=body, headers=headers, timeout=30)
    steps = dict(item.strip().split(";dur=") for item in r.headers["server-timing"].split(","))
    assert list(steps) == ["receive", "parse", "queue", "infer", "resume", "encode"]
    assert all(float(v) >= 0 for v in steps.values()) and float(steps["infer"]) > 0


def test_binary_response_layout_matches_the_extension(server):
    """Raw HTTP: JSON header, then little-endian FP32 bytes, lengths as declared."""
    x = _x(1)
    body, headers = _binary_request(x, header_extra={"parameters": {"binary_data_output": True}, "id": "req-7"})
    r = httpx.post(f"{server}/v2/models/digits/infer", content=body, headers=headers, timeout=30)
    n = int(r.headers["inference-header-content-length"])
    head = json.loads(r.content[:n])
    assert head["id"] == "req-7" and head["model_name"] == "digits"
    out = head["outputs"][0]
    size = out["parameters"]["binary_data_size"]
    assert size == 10 * 4 == len(r.content) - n
    assert len(struct.unpack("<10f", r.content[n:])) == 10


# --- gRPC (inference.GRPCInferenceService) --------------------------------------------------------------

def _grpc_input(x):
    import tritonclient.grpc as tgrpc

    inp = tgrpc.InferInput("input", list(x.shape), "FP32")
    inp.set_data_from_numpy(x)
    return inp


def test_grpc_health_metadata_and_infer(grpc_client, expected):
    import tritonclient.grpc as tgrpc

    assert grpc_client.is_server_live() and grpc_client.is_server_ready() and grpc_client.is_model_ready("digits")
    assert not grpc_client.is_model_ready("nope")
    meta = grpc_client.get_model_metadata("digits", as_json=True)
    assert meta["inputs"][0]["shape"] == ["-1", "3", "32", "32"] and meta["outputs"][0]["name"] == "logits"
    x = _x(3, seed=11)
    res = grpc_client.infer("digits", [_grpc_input(x)])
    np.testing.assert_allclose(res.as_numpy("logits"), expected(x), rtol=1e-6, atol=1e-6)
    res = grpc_client.infer("digits", [_grpc_input(x)], parameters={"top_k": 4},
                            outputs=[tgrpc.InferRequestedOutput("top_k_indices")])
    assert res.as_numpy("logits") is None
    assert (res.as_numpy("top_k_indices") == np.argsort(-expected(x), axis=1)[:, :4]).all()


def test_grpc_errors_carry_status_and_message(grpc_client, expected):
    from tritonclient.utils import InferenceServerException

    with pytest.raises(InferenceServerException, match="NOT_FOUND.*unknown model"):
        grpc_client.infer("nope", [_grpc_input(_x(1))])
    bad = np.zeros((1, 3, 16, 16), dtype=np.float32)
    with pytest.raises(InferenceServerException, match="INVALID_ARGUMENT.*expects \\[-1, 3, 32, 32\\]"):
        grpc_client.infer("digits", [_grpc_input(bad)])
    x = _x(1, seed=12)
    np.testing.assert_allclose(grpc_client.infer("digits", [_grpc_input(x)]).as_numpy("logits"), expected(x),
                               rtol=1e-6, atol=1e-6)


def test_grpc_requests_are_counted(server, grpc_client):
    grpc_client.infer("digits", [_grpc_input(_x(1))])
    assert 'dirac_deploy_requests_total{model="digits",protocol="grpc",status="200"}' in httpx.get(f"{server}/metrics").text


def test_client_closing_mid_body_is_counted_and_harmless(server, client, expected):
    import socket

    host, port = server.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as s:
        s.sendall(b"POST /v2/models/digits/infer HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n" + b"{" * 10)
    deadline = time.monotonic() + 10
    while 'model="digits",protocol="http",status="499"' not in httpx.get(f"{server}/metrics").text:
        assert time.monotonic() < deadline, "the abandoned request was never counted"
        time.sleep(0.1)
    x = _x(1, seed=13)
    np.testing.assert_allclose(client.infer("digits", [_input(x)]).as_numpy("logits"), expected(x), rtol=1e-6, atol=1e-6)


def test_instances_and_batching_options_serve_the_same_answers(model_dir, expected):
    with running_server(str(model_dir / "digits.onnx"), "--instances", "2", "--max-batch", "4") as (url, _):
        c = triton.InferenceServerClient(url.removeprefix("http://"), network_timeout=30.0)
        params = c.get_model_metadata("digits")["parameters"]
        assert params["instances"] == "2" and params["dynamic_batch_max_images"] == "4"
        xs = [_x(2, seed=20 + i) for i in range(8)]
        with ThreadPoolExecutor(4) as pool:
            outs = list(pool.map(lambda x: triton.InferenceServerClient(url.removeprefix("http://")).infer(
                "digits", [_input(x)]).as_numpy("logits"), xs))
        for x, got in zip(xs, outs):  # rows computed inside a bigger batch may round differently
            np.testing.assert_allclose(got, expected(x), rtol=1e-5, atol=1e-5)


def test_benchmark_floor_server_answers_tritonclient_like_a_server():
    """benchmarks/floor_server.py is only a fair floor if tritonclient parses its answer as a full response."""
    import subprocess
    import sys

    port = free_port()
    proc = subprocess.Popen([sys.executable, str(ROOT / "benchmarks" / "floor_server.py"), str(port), "20"])
    try:
        c = triton.InferenceServerClient(f"127.0.0.1:{port}", network_timeout=10.0)
        deadline = time.monotonic() + 30
        while True:
            try:
                t0 = time.perf_counter()
                logits = c.infer("floor", [_input(_x(1))]).as_numpy("logits")
                break
            except Exception:
                assert time.monotonic() < deadline, "floor server did not answer"
                c = triton.InferenceServerClient(f"127.0.0.1:{port}", network_timeout=10.0)
                time.sleep(0.2)
        assert logits.shape == (1, 1000) and not logits.any()
        assert time.perf_counter() - t0 >= 0.02  # it waited the 20 ms it was told to
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_serving_an_onnx_needs_no_torch(model_dir, expected, tmp_path):
    """What the slim image relies on: the CLI serves .onnx files (and refuses a checkpoint with one line) in a
    process where torch, onnxscript and onnxsim cannot be imported."""
    blocked = ("torch", "onnxscript", "onnxsim")
    with running_server(str(model_dir), block=blocked) as (url, proc):
        c = triton.InferenceServerClient(url.removeprefix("http://"), network_timeout=30.0)
        x = _x(3, seed=5)
        inp = triton.InferInput("input", list(x.shape), "FP32")
        inp.set_data_from_numpy(x, binary_data=True)
        got = c.infer("digits", [inp]).as_numpy("logits")
        c.close()
        np.testing.assert_allclose(got, expected(x), rtol=1e-5, atol=1e-6)
    import subprocess
    import sys

    from serving import _BLOCKING_MAIN

    proc = subprocess.run([sys.executable, "-c", _BLOCKING_MAIN, ",".join(blocked), "serve",
                           str(embedded_checkpoint()), "--port", str(free_port())],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert "torch" in proc.stderr and len(proc.stderr.strip().splitlines()) == 1, proc.stderr


def test_engine_ray_without_ray_names_the_install(model_dir):
    """`serve --engine ray` where Ray is not installed: one line naming the extra, exit 1, no traceback."""
    import subprocess
    import sys

    from serving import _BLOCKING_MAIN

    proc = subprocess.run([sys.executable, "-c", _BLOCKING_MAIN, "ray", "serve", str(model_dir / "digits.onnx"), "--engine", "ray",
                           "--port", str(free_port())], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert "'.[ray]'" in proc.stderr and len(proc.stderr.strip().splitlines()) == 1, proc.stderr

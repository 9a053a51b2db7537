"""A hostile client against a real server on 127.0.0.1 (HTTP and gRPC), bounded in count and time.

Every malformed request must get a 4xx with the documented `{"error": ...}` body (gRPC: INVALID_ARGUMENT, or
RESOURCE_EXHAUSTED over the size limit), and the server must still answer a valid request correctly afterwards.
Slow or silent connections are timed out, the connection count is capped, and shutdown is bounded.
"""

import contextlib
import json
import random
import signal
import socket
import subprocess
import sys
import time

import grpc
import httpx
import numpy as np
import onnx
import pytest
from tritonclient.grpc import service_pb2 as pb
from tritonclient.grpc import service_pb2_grpc as pb_grpc

from dirac_deploy._optional import available
from dirac_deploy.data import embedded_checkpoint
from dirac_deploy.export.from_file import export_file
from dirac_deploy.runtimes.onnxruntime import session as ort_session
from dirac_deploy.serve.protocol import encode_infer_response

from serving import free_port, running_server

pytestmark = pytest.mark.hostile


SHAPE = [1, 3, 32, 32]


@pytest.fixture(scope="module")
def onnx_path(tmp_path_factory):
    d = tmp_path_factory.mktemp("hostile-serve")
    export_file(embedded_checkpoint(), d / "digits.onnx")
    return d / "digits.onnx"


@pytest.fixture(scope="module")
def endpoints(onnx_path):
    grpc_port = free_port()
    with running_server(str(onnx_path), "--grpc-port", str(grpc_port), "--max-body-mb", "2",
                        "--header-timeout", "1", "--body-timeout", "1", "--max-connections", "16") as (url, proc):
        yield url, f"127.0.0.1:{grpc_port}", proc


@pytest.fixture(scope="module")
def expected(onnx_path):
    session = ort_session(onnx.load(onnx_path), threads=1)
    return lambda x: session.run(["logits"], {"input": x})[0]


def _valid(x):
    return {"inputs": [{"name": "input", "shape": list(x.shape), "datatype": "FP32", "data": x.reshape(-1).tolist()}]}


def _still_correct(url, expected):
    x = np.random.default_rng(7).standard_normal(SHAPE).astype(np.float32)
    r = httpx.post(f"{url}/v2/models/digits/infer", json=_valid(x), timeout=30)
    assert r.status_code == 200, r.text
    got = np.asarray(r.json()["outputs"][0]["data"], np.float32).reshape(1, -1)
    np.testing.assert_allclose(got, expected(x), rtol=1e-5, atol=1e-5)


def _json_bodies():
    x = [0.0] * 3072
    good = {"name": "input", "shape": SHAPE, "datatype": "FP32", "data": x}
    yield "deep brackets", b"[" * 100_000, {}
    for name, t in [
        ("huge dims, no data", {**good, "shape": [4294967296, 4294967296, 1, 1], "data": []}),
        ("dim 10**30", {**good, "shape": [10**30]}),
        ("65 dims", {**good, "shape": [1] * 65}),
        ("value 10**400", {**good, "shape": [1], "data": [10**400]}),
        ("count overflow", {**good, "shape": [2**62, 2**62, 2**62, 2**62]}),
        ("negative dim", {**good, "shape": [-1, 3, 32, 32]}),
        ("bool dim", {**good, "shape": [True, 3, 32, 32]}),
        ("string data", {**good, "data": "abc"}),
        ("nested wrong", {**good, "data": [[1, 2], [3]]}),
        ("nested too deep", {**good, "shape": [1], "data": [[[[[[[[1.0]]]]]]]]}),
        ("object data", {**good, "data": {"a": 1}}),
        ("NaN", {**good, "data": [float("nan")] + x[1:]}),
        ("Infinity", {**good, "data": [float("inf")] + x[1:]}),
        ("datatype int", {**good, "datatype": 7}),
        ("datatype unknown", {**good, "datatype": "FP8"}),
        ("name not a string", {**good, "name": 5}),
        ("params a list", {**good, "parameters": [1]}),
        ("binary size negative", {**good, "parameters": {"binary_data_size": -4}}),
        ("binary size str", {**good, "parameters": {"binary_data_size": "4"}}),
        ("no data", {k: v for k, v in good.items() if k != "data"}),
        ("wrong input name", {**good, "name": "x"}),
        ("wrong rank", {**good, "shape": [3, 32, 32], "data": x}),
        ("FP64", {**good, "datatype": "FP64"}),
    ]:
        yield name, json.dumps({"inputs": [t]}, allow_nan=True).encode(), {}
    for name, body in [
        ("outputs params str", {"inputs": [good], "outputs": [{"name": "logits", "parameters": "abc"}]}),
        ("outputs params list", {"inputs": [good], "outputs": [{"name": "logits", "parameters": [1]}]}),
        ("outputs not a list", {"inputs": [good], "outputs": "logits"}),
        ("unknown output", {"inputs": [good], "outputs": [{"name": "nope"}]}),
        ("top_k str", {"inputs": [good], "parameters": {"top_k": "5"}}),
        ("top_k huge", {"inputs": [good], "parameters": {"top_k": 10**20}}),
        ("parameters list", {"inputs": [good], "parameters": [1]}),
        ("inputs empty", {"inputs": []}),
        ("inputs object", {"inputs": {"a": 1}}),
        ("id object", {"inputs": [good], "id": {"x": 1}, "outputs": [{"name": "nope"}]}),
    ]:
        yield name, json.dumps(body).encode(), {}
    head = json.dumps({"inputs": [{"name": "input", "shape": SHAPE, "datatype": "FP32",
                                   "parameters": {"binary_data_size": 12288}}]}).encode()
    yield "header length too big", head + b"\0" * 12288, {"Inference-Header-Content-Length": str(10**9)}
    yield "header length negative", head + b"\0" * 12288, {"Inference-Header-Content-Length": "-3"}
    yield "header length text", head + b"\0" * 12288, {"Inference-Header-Content-Length": "x" * 5000}
    yield "binary short", head + b"\0" * 100, {"Inference-Header-Content-Length": str(len(head))}
    yield "not utf-8", b"\xff\xfe{", {}


def _mutations(seed=0, n=120):
    """Random structural and byte mutations of a valid JSON request (seeded)."""
    rng = random.Random(seed)
    x = np.zeros(SHAPE, np.float32)
    base = json.dumps(_valid(x)).encode()
    junk = [b"null", b"[]", b"{}", b"-1", b"1e999", b'"x"', b"true", b"[[[[", b"NaN", b"\x00", b"99999999999999999999"]
    for i in range(n):
        body = bytearray(base)
        for _ in range(rng.randint(1, 3)):
            pos = rng.randrange(len(body))
            if rng.random() < 0.5:
                body[pos:pos + rng.randint(0, 8)] = rng.choice(junk)
            else:
                body[pos] = rng.randrange(256)
        yield f"mutation {i}", bytes(body), {}


def test_malformed_http_requests_get_4xx_json_and_the_server_keeps_answering(endpoints, expected):
    url, _, proc = endpoints
    start = time.monotonic()
    with httpx.Client(timeout=30) as client:
        for name, body, headers in [*_json_bodies(), *_mutations()]:
            r = client.post(f"{url}/v2/models/digits/infer", content=body, headers=headers)
            if name.startswith("mutation") and r.status_code == 200:
                continue  # a mutation can leave a valid request (e.g. changed a digit of the data)
            assert 400 <= r.status_code < 500, (name, r.status_code, r.text[:300])
            assert isinstance(r.json().get("error"), str) and r.json()["error"], name
    assert time.monotonic() - start < 120
    assert proc.poll() is None
    _still_correct(url, expected)


def test_every_route_answers_errors_as_json(endpoints):
    url, _, _ = endpoints
    for method, path, status in (("GET", "/v2/nope", 404), ("GET", "/v2/models/nope", 404),
                                 ("GET", "/v2/models/nope/ready", 404), ("DELETE", "/v2", 405),
                                 ("GET", "/v2/models/digits/infer", 405), ("POST", "/v2/models/nope/infer", 404)):
        r = httpx.request(method, url + path, timeout=10)
        assert r.status_code == status and "error" in r.json(), (method, path, r.status_code, r.text)
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as s:  # not HTTP at all
        s.sendall(b"\x16\x03\x01 this is not an http request\r\n\r\n")
        reply = s.recv(4096)
    assert reply.startswith(b"HTTP/1.1 400") and b'{"error": "invalid HTTP request' in reply


def test_non_finite_outputs_are_json_null():
    body, _ = encode_infer_response("m", None, [("logits", np.array([[1.0, np.nan, np.inf]], np.float32), False)])
    assert json.loads(body)["outputs"][0]["data"] == [1.0, None, None]


def _grpc_request(**kw):
    x = np.zeros(SHAPE, np.float32)
    t = dict(name="input", datatype="FP32", shape=SHAPE)
    t.update(kw.pop("tensor", {}))
    req = pb.ModelInferRequest(model_name="digits", inputs=[pb.ModelInferRequest.InferInputTensor(**t)], **kw)
    raw = kw.get("raw_input_contents")
    if raw is None and "contents" not in t:
        req.raw_input_contents.append(x.tobytes())
    return req


def test_malformed_grpc_requests_get_invalid_argument(endpoints, expected):
    url, address, proc = endpoints
    channel = grpc.insecure_channel(address, options=[("grpc.max_send_message_length", 64 << 20)])
    stub = pb_grpc.GRPCInferenceServiceStub(channel)
    Contents = pb.InferTensorContents
    cases = {
        "huge dims": _grpc_request(tensor={"shape": [4294967296, 4294967296, 1, 1]}),
        "65 dims": _grpc_request(tensor={"shape": [1] * 65}),
        "negative dim": _grpc_request(tensor={"shape": [-1, 3, 32, 32]}),
        "unknown datatype": _grpc_request(tensor={"datatype": "FP8"}),
        "typed count": _grpc_request(tensor={"contents": Contents(fp32_contents=[1.0] * 5)}),
        "typed NaN": _grpc_request(tensor={"contents": Contents(fp32_contents=[float("nan")] * 3072)}),
        "raw short": _grpc_request(raw_input_contents=[b"\0" * 10]),
        "raw count": _grpc_request(raw_input_contents=[b"\0" * 12288, b"\0" * 4]),
        "wrong name": _grpc_request(tensor={"name": "x"}),
        "wrong rank": _grpc_request(tensor={"shape": [3, 32, 32]}),
        "no inputs": pb.ModelInferRequest(model_name="digits"),
        "bad top_k": _grpc_request(parameters={"top_k": pb.InferParameter(string_param="5")}),
        "100 KB input name": _grpc_request(tensor={"name": "x" * 100_000}),
    }
    for name, req in cases.items():
        with pytest.raises(grpc.RpcError) as e:
            stub.ModelInfer(req, timeout=30)
        assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT, (name, e.value.code(), e.value.details())
        assert e.value.details(), name
    with pytest.raises(grpc.RpcError) as e:  # over --max-body-mb 2
        stub.ModelInfer(_grpc_request(raw_input_contents=[b"\0" * (3 << 20)]), timeout=30)
    assert e.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    for name in ("nope", "n" * 100_000):  # details echo the name: cut to fit a trailer, never "Stream removed"
        with pytest.raises(grpc.RpcError) as e:
            stub.ModelInfer(pb.ModelInferRequest(model_name=name), timeout=30)
        assert e.value.code() == grpc.StatusCode.NOT_FOUND and len(e.value.details()) < 1200, e.value.details()[:200]
    channel.close()
    assert proc.poll() is None
    _still_correct(url, expected)


def _read_until_closed(sock, limit: int = 1 << 16) -> bytes:
    """Everything the server sends before it closes (a reply may arrive in several segments)."""
    data = b""
    while len(data) < limit:
        chunk = sock.recv(4096)
        if not chunk:
            break
        data += chunk
    return data


def test_silent_and_stalled_connections_are_timed_out(endpoints, expected):
    url, _, _ = endpoints
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as silent:
        t0 = time.monotonic()
        reply = _read_until_closed(silent)  # nothing sent: the header timeout (1 s) answers and closes
        assert reply.startswith(b"HTTP/1.1 408") and b"headers did not arrive" in reply
        assert time.monotonic() - t0 < 5
    with socket.create_connection((host, int(port)), timeout=10) as stalled:
        stalled.sendall(b"POST /v2/models/digits/infer HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n{\"in")
        reply = _read_until_closed(stalled)  # the body stops: the body timeout (1 s) answers and closes
        assert b" 408 " in reply.split(b"\r\n")[0] and b"stalled" in reply
    _still_correct(url, expected)


def _healthy(url) -> bool:
    return httpx.get(f"{url}/v2/health/ready", timeout=5).status_code == 200


def _rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def test_endless_headers_are_cut_at_the_header_cap(endpoints, expected):
    """16 MiB of header lines, sent as fast as the server takes them: it answers 431 (or resets the
    connection it has already closed) long before, and its memory does not grow with what was sent."""
    url, _, proc = endpoints
    host, port = url.removeprefix("http://").split(":")
    before = _rss_mb(proc.pid)
    with socket.create_connection((host, int(port)), timeout=10) as flood:
        flood.sendall(b"POST /v2/models/digits/infer HTTP/1.1\r\nHost: x\r\n")
        sent, reply = 0, b""
        try:
            while sent < 16 << 20:
                sent += flood.send(b"X-Pad: " + b"a" * 1000 + b"\r\n")
            reply = _read_until_closed(flood)
        except (BrokenPipeError, ConnectionResetError):
            with contextlib.suppress(OSError):
                reply = flood.recv(4096)
    assert sent < 16 << 20, "the server took 16 MiB of headers"
    assert not reply or reply.startswith(b"HTTP/1.1 431"), reply[:200]
    assert _rss_mb(proc.pid) - before < 64
    assert _healthy(url)
    _still_correct(url, expected)


def test_a_trickled_body_is_cut_at_the_minimum_rate(endpoints, expected):
    url, _, _ = endpoints
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as slow:
        slow.sendall(b"POST /v2/models/digits/infer HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n")
        t0, reply = time.monotonic(), b""
        while time.monotonic() - t0 < 8 and not reply:  # one byte every 0.4 s: inside the 1 s stall timeout
            try:
                slow.sendall(b"{")
            except (BrokenPipeError, ConnectionResetError):
                break
            slow.settimeout(0.4)
            with contextlib.suppress(TimeoutError):
                reply = slow.recv(4096)
            assert _healthy(url)
        slow.settimeout(10)
        reply += _read_until_closed(slow)
        assert b" 408 " in reply.split(b"\r\n")[0] and b"bytes/s" in reply, reply[:300]
        assert time.monotonic() - t0 < 5, (time.monotonic() - t0, reply)
    _still_correct(url, expected)


def test_grpc_connections_are_capped_and_the_rest_keeps_working(endpoints, expected):
    """Idle TCP connections to the gRPC port beyond --max-connections (16 here) are closed by gRPC core at once:
    the server's open files stay bounded, HTTP keeps answering, and gRPC answers again once they go."""
    import os

    url, address, proc = endpoints
    host, port = address.split(":")
    before = len(os.listdir(f"/proc/{proc.pid}/fd"))
    idle = [socket.create_connection((host, int(port)), timeout=5) for _ in range(60)]
    time.sleep(1.0)
    assert len(os.listdir(f"/proc/{proc.pid}/fd")) - before <= 16 + 4
    assert _healthy(url)
    for s in idle:
        s.close()
    time.sleep(0.5)
    channel = grpc.insecure_channel(address)
    stub = pb_grpc.GRPCInferenceServiceStub(channel)
    assert stub.ServerLive(pb.ServerLiveRequest(), timeout=30).live
    channel.close()
    _still_correct(url, expected)


def test_connections_beyond_the_cap_get_503_json(endpoints, expected):
    url, _, _ = endpoints
    host, port = url.removeprefix("http://").split(":")
    held = [socket.create_connection((host, int(port)), timeout=10) for _ in range(16)]
    try:
        time.sleep(0.2)
        with socket.create_connection((host, int(port)), timeout=10) as extra:
            reply = extra.recv(4096)
        assert reply.startswith(b"HTTP/1.1 503") and b"too many open connections" in reply
    finally:
        for s in held:
            s.close()
    time.sleep(0.3)
    _still_correct(url, expected)


def test_sigterm_with_a_stalled_client_is_bounded_and_clean(onnx_path):
    with running_server(str(onnx_path), "--drain-seconds", "2", "--body-timeout", "30") as (url, proc):
        host, port = url.removeprefix("http://").split(":")
        stalled = socket.create_connection((host, int(port)), timeout=10)
        stalled.sendall(b"POST /v2/models/digits/infer HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n{")
        time.sleep(0.3)
        t0 = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
        assert time.monotonic() - t0 < 8
        try:
            reply = _read_until_closed(stalled)
        except OSError:
            reply = b""
        stalled.close()
        assert "Traceback" not in proc.stderr.read()
        # the request the drain gave up on is answered like every error: JSON, never uvicorn's text/plain
        assert not reply or (b" 503 " in reply.split(b"\r\n")[0] and b"application/json" in reply), reply[:300]


def test_sigterm_while_loading_exits_zero(tmp_path):
    import torch

    import reference

    torch.save(reference.as_params_stats(reference.define_params("imagenet", 34, 1.0, seed=1)), tmp_path / "big.pth")
    cmd = [sys.executable, "-m", "dirac_deploy.cli", "serve", str(tmp_path / "big.pth"), "--port", str(free_port())]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(4)  # imports done, folding DiracNet-34 under way
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert "stopped before serving" in out and "Traceback" not in err


def test_sigterm_while_a_plain_file_is_exported_exits_zero(tmp_path):
    """The in-memory export of a plain.pth runs inside the ONNX exporter, whose `except Exception` blocks
    must not swallow the stop."""
    import torch

    from dirac_deploy import fold_checkpoint

    import reference

    torch.save(reference.as_params_stats(reference.define_params("imagenet", 34, 1.0, seed=1)), tmp_path / "big.pt7")
    fold_checkpoint(tmp_path / "big.pt7", tmp_path / "big.pth")
    cmd = [sys.executable, "-m", "dirac_deploy.cli", "serve", str(tmp_path / "big.pth"), "--port", str(free_port())]
    for delay in (3.0, 5.0):  # during the imports' tail and during the export
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        time.sleep(delay)
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=60)
        assert proc.returncode in (0, -signal.SIGTERM), err  # before our handler is installed: the default
        if proc.returncode == 0:
            assert "stopped before serving" in out and "Traceback" not in err and "_Stopped" not in err, (out, err)


def test_a_port_in_use_is_one_line_before_anything_loads(onnx_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        for flag in ("--port", "--grpc-port"):
            extra = ["--port", str(port)] if flag == "--port" else ["--port", "0", "--grpc-port", str(port)]
            proc = subprocess.run([sys.executable, "-m", "dirac_deploy.cli", "serve", str(onnx_path), *extra],
                                  capture_output=True, text=True, timeout=120)
            lines = proc.stderr.strip().splitlines()
            assert proc.returncode == 1 and len(lines) == 1 and "in use" in lines[0] and flag in lines[0], proc.stderr
            assert "loaded" not in proc.stdout and "serving" not in proc.stdout


def _tampered(onnx_path, tmp_path, name, edit):
    from dirac_deploy.artifacts.digest import stamp_onnx

    model = onnx.load(onnx_path)
    edit(model)
    stamp_onnx(model)  # the digest recomputed, as a deliberate attacker would: the audit and probe must hold
    onnx.save(model, tmp_path / f"{name}.onnx")
    return tmp_path / f"{name}.onnx"


def test_served_onnx_is_audited_and_checked_against_its_probe(onnx_path, tmp_path):
    def custom_domain(m):
        relu = next(n for n in m.graph.node if n.op_type == "Relu")
        relu.domain = "com.example"
        m.opset_import.add(domain="com.example", version=1)

    def extra_ops(m):  # y = sin(logits) * logits: still runs, but no folded chain holds Sin or Mul
        out = m.graph.output[0].name
        m.graph.node[-1].output[0] = "pre"
        m.graph.node.extend([onnx.helper.make_node("Sin", ["pre"], ["s"]), onnx.helper.make_node("Mul", ["s", "pre"], [out])])

    def wrong_classes(m):  # declares 12 classes, returns 10
        m.graph.output[0].type.tensor_type.shape.dim[1].dim_value = 12

    for name, edit, fragment in (("custom", custom_domain, "com.example::Relu"), ("ops", extra_ops, "Sin"),
                                 ("classes", wrong_classes, "declares 12 classes")):
        path = _tampered(onnx_path, tmp_path, name, edit)
        proc = subprocess.run([sys.executable, "-m", "dirac_deploy.cli", "serve", str(path), "--port", "0"],
                              capture_output=True, text=True, timeout=60)  # bounded even if it wrongly serves
        lines = proc.stderr.strip().splitlines()
        assert proc.returncode == 1 and len(lines) == 1 and fragment in lines[0], (name, proc.stdout, proc.stderr)


@pytest.mark.skipif(not available("openvino"), reason="needs OpenVINO (pip install '.[openvino]')")
def test_low_precision_models_face_the_same_attacks(onnx_path, tmp_path):
    """An int8 ONNX on ONNX Runtime and an int8 IR on OpenVINO, served side by side: the malformed requests
    get 4xx JSON from both, oversized JSON and long integers too, and both still answer what they answer
    in-process."""
    from click.testing import CliRunner

    from dirac_deploy.cli import main
    from dirac_deploy.serve.model import ModelSource
    from dirac_deploy.serve_files import load_served_model

    q_onnx, q_xml = tmp_path / "q8.onnx", tmp_path / "ir8.xml"
    for out, extra in ((q_onnx, []), (q_xml, ["--target", "openvino", "--method", "identity"])):
        res = CliRunner().invoke(main, ["quantize", str(onnx_path), "-o", str(out), "--min-speedup", "0", *extra])
        assert res.exit_code == 0, res.output
    with running_server(f"digits={q_onnx}", f"ir={q_xml}", "--max-json-mb", "1") as (url, proc):
        with httpx.Client(timeout=30) as client:
            for model in ("digits", "ir"):
                for name, body, headers in [*_json_bodies(), *_mutations(seed=1, n=40)]:
                    r = client.post(f"{url}/v2/models/{model}/infer", content=body, headers=headers)
                    if name.startswith("mutation") and r.status_code == 200:
                        continue
                    assert 400 <= r.status_code < 500 and r.json()["error"], (model, name, r.status_code)
                big = json.dumps({"inputs": [{"name": "input", "shape": [100, 3, 32, 32], "datatype": "FP32",
                                              "data": [0.5] * (100 * 3072)}]}).encode()
                r = client.post(f"{url}/v2/models/{model}/infer", content=big)
                assert r.status_code == 413 and "max_json_mb" in r.json()["error"]
                r = client.post(f"{url}/v2/models/{model}/infer", content=b'{"id": %s}' % (b"9" * 5000))
                assert r.status_code == 400
                assert client.get(f"{url}/v2/health/ready").status_code == 200
        x = np.random.default_rng(7).standard_normal(SHAPE).astype(np.float32)
        for model, path in (("digits", q_onnx), ("ir", q_xml)):
            r = httpx.post(f"{url}/v2/models/{model}/infer", json=_valid(x), timeout=30)
            got = np.asarray(r.json()["outputs"][0]["data"], np.float32).reshape(1, -1)
            want = load_served_model(ModelSource(model, path), threads=1).infer(x)
            np.testing.assert_allclose(got, want, rtol=1e-3, atol=1e-3 * float(np.abs(want).max()))
        assert proc.poll() is None


def test_grpc_calls_at_once_are_bounded_by_the_inflight_budget(onnx_path):
    """--max-inflight-mb 32 over --max-body-mb 16: two gRPC calls at once; more get RESOURCE_EXHAUSTED and the
    ones admitted are answered."""
    from concurrent.futures import ThreadPoolExecutor

    grpc_port = free_port()
    with running_server(str(onnx_path), "--grpc-port", str(grpc_port), "--max-body-mb", "16",
                        "--max-inflight-mb", "32") as (url, proc):
        x = np.zeros((1300, 3, 32, 32), np.float32)  # 16 MB: about a third of a second on one thread
        channel = grpc.insecure_channel(f"127.0.0.1:{grpc_port}", options=[("grpc.max_send_message_length", 32 << 20),
                                                                          ("grpc.max_receive_message_length", 32 << 20)])
        stub = pb_grpc.GRPCInferenceServiceStub(channel)
        req = pb.ModelInferRequest(model_name="digits", inputs=[pb.ModelInferRequest.InferInputTensor(
            name="input", datatype="FP32", shape=list(x.shape))], raw_input_contents=[x.tobytes()])

        def call(_):
            try:
                stub.ModelInfer(req, timeout=60)
                return "ok"
            except grpc.RpcError as e:
                return e.code().name

        with ThreadPoolExecutor(8) as pool:
            codes = list(pool.map(call, range(8)))
        channel.close()
        assert codes.count("ok") >= 2 and "RESOURCE_EXHAUSTED" in codes, codes
        assert set(codes) <= {"ok", "RESOURCE_EXHAUSTED"}, codes
        assert _healthy(url)

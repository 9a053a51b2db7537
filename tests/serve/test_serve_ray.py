"""serve_ray: the Open Inference Protocol app on Ray Serve, 2 replicas on a local cluster bound to 127.0.0.1:
tritonclient answers equal in-process inference, bad requests get the plain server's 4xx bodies, a bounded load
loses and corrupts nothing, a replica killed mid-load is replaced, and stopping leaves no Ray process."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import numpy as np
import pytest
from test_serve_limits import _grpc_request, _json_bodies

from dirac_deploy._optional import available
from dirac_deploy.data import embedded_checkpoint
from dirac_deploy.export.from_file import export_file
from dirac_deploy.serve.limits import ServeLimits
from dirac_deploy.serve.model import ModelSource
from dirac_deploy.serve_files import load_served_model

from serving import free_port, running_server

if os.environ.get("DIRAC_REQUIRE_RAY") == "1" and not available("ray.serve"):  # `make test-ray` installed it
    raise RuntimeError("DIRAC_REQUIRE_RAY=1 but ray[serve] is not importable: run `make test-ray`, which installs it")
pytestmark = [pytest.mark.ray, pytest.mark.e2e,
              pytest.mark.skipif(not available("ray.serve"),
                                 reason="ray[serve] not installed (pip install '.[ray]', or make test-ray)")]

SHAPE = (1, 3, 32, 32)


def _ray_processes() -> list[str]:
    out = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True).stdout.splitlines()
    return [p for p in out if "raylet" in p or "gcs_server" in p or p.startswith("ray::")]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    from dirac_deploy.serve_ray import RayOptions, start_ray, stop_ray

    d = tmp_path_factory.mktemp("ray")
    onnx_path = d / "digits.onnx"
    export_file(embedded_checkpoint(), onnx_path)
    grpc_port = free_port()
    url = start_ray([f"digits={onnx_path}"], host="127.0.0.1", port=free_port(), grpc_port=grpc_port,
                    limits=ServeLimits(max_body_bytes=2 << 20),
                    options=RayOptions(replicas=2, cpus_per_replica=0.5, threads=1, num_cpus=2))
    local = load_served_model(ModelSource("digits", onnx_path), threads=1)
    try:
        yield url, onnx_path, local, f"127.0.0.1:{grpc_port}"
    finally:
        stop_ray()


def _infer(client, x, binary=True):
    import tritonclient.http as th

    inp = th.InferInput("input", list(x.shape), "FP32")
    inp.set_data_from_numpy(x, binary_data=binary)
    out = th.InferRequestedOutput("logits", binary_data=binary)
    return client.infer("digits", [inp], outputs=[out]).as_numpy("logits")


def test_tritonclient_answers_equal_in_process_inference(cluster):
    import tritonclient.http as th

    url, _, local, _ = cluster
    client = th.InferenceServerClient(url.removeprefix("http://"))
    assert client.is_server_ready() and client.is_model_ready("digits")
    x = np.random.default_rng(0).standard_normal((4, *SHAPE[1:])).astype(np.float32)
    want = local.infer(x)
    for binary in (True, False):
        np.testing.assert_allclose(_infer(client, x, binary), want, rtol=1e-5, atol=1e-5)


def test_bad_requests_get_the_plain_servers_bodies(cluster):
    url, onnx_path, _, _ = cluster
    cases = list(_json_bodies())
    with running_server(str(onnx_path)) as (plain, _proc), httpx.Client(timeout=30) as c:
        for name, body, headers in cases:
            got = c.post(f"{url}/v2/models/digits/infer", content=body, headers=headers)
            want = c.post(f"{plain}/v2/models/digits/infer", content=body, headers=headers)
            assert (got.status_code, got.json()) == (want.status_code, want.json()), name
            assert 400 <= got.status_code < 500, name
        assert c.get(f"{url}/v2/models/nope").json() == c.get(f"{plain}/v2/models/nope").json()


def test_grpc_through_rays_proxy_answers_as_the_plain_server(cluster):
    """tritonclient.grpc against Ray's gRPC proxy: health, metadata and infer equal in-process inference; bad
    requests get the plain server's status code and details; the body limit holds."""
    import grpc
    import tritonclient.grpc as tg
    from tritonclient.grpc import service_pb2 as pb
    from tritonclient.grpc import service_pb2_grpc as pb_grpc

    _, onnx_path, local, address = cluster
    client = tg.InferenceServerClient(address)
    assert client.is_server_live() and client.is_server_ready() and client.is_model_ready("digits")
    assert not client.is_model_ready("nope")
    assert client.get_model_metadata("digits", as_json=True)["inputs"][0]["shape"] == ["-1", "3", "32", "32"]
    x = np.random.default_rng(4).standard_normal((3, *SHAPE[1:])).astype(np.float32)
    inp = tg.InferInput("input", list(x.shape), "FP32")
    inp.set_data_from_numpy(x)
    np.testing.assert_allclose(client.infer("digits", [inp]).as_numpy("logits"), local.infer(x), rtol=1e-5, atol=1e-5)

    cases = {"negative dim": _grpc_request(tensor={"shape": [-1, 3, 32, 32]}),
             "raw short": _grpc_request(raw_input_contents=[b"\0" * 10]),
             "wrong rank": _grpc_request(tensor={"shape": [3, 32, 32]}),
             "no inputs": pb.ModelInferRequest(model_name="digits"),
             "unknown model": pb.ModelInferRequest(model_name="nope")}
    plain_grpc = free_port()
    with running_server(str(onnx_path), "--grpc-port", str(plain_grpc)):
        for name, req in cases.items():
            got, want = [], []
            for addr, out in ((address, got), (f"127.0.0.1:{plain_grpc}", want)):
                with grpc.insecure_channel(addr) as channel, pytest.raises(grpc.RpcError) as e:
                    pb_grpc.GRPCInferenceServiceStub(channel).ModelInfer(req, timeout=30)
                out.append((e.value.code(), e.value.details()))
            assert got == want, name
            assert got[0][0] in (grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.NOT_FOUND), name
    with grpc.insecure_channel(address) as channel, pytest.raises(grpc.RpcError) as e:  # over 2 MB
        pb_grpc.GRPCInferenceServiceStub(channel).ModelInfer(_grpc_request(raw_input_contents=[b"\0" * (3 << 20)]),
                                                              timeout=30)
    assert e.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED and "max_body_mb" in e.value.details()


def _load(url, n: int, clients: int, expected, x, on_done=lambda _i: None) -> tuple[int, int, list[str]]:
    """n requests from `clients` threads; returns (ok, wrong, errors)."""
    import tritonclient.http as th

    local = threading.local()
    lock = threading.Lock()
    counts = {"ok": 0, "wrong": 0}
    errors: list[str] = []

    def one(i):
        if not hasattr(local, "client"):
            local.client = th.InferenceServerClient(url.removeprefix("http://"), network_timeout=60)
        try:
            got = _infer(local.client, x)
        except Exception as exc:  # a failed request is counted, not raised: the test asserts on the counts
            with lock:
                errors.append(str(exc).splitlines()[0][:200])
        else:
            good = np.allclose(got, expected, rtol=1e-5, atol=1e-5)
            with lock:
                counts["ok" if good else "wrong"] += 1
        on_done(i)

    with ThreadPoolExecutor(clients) as pool:
        list(pool.map(one, range(n)))
    return counts["ok"], counts["wrong"], errors


def test_a_thousand_requests_from_eight_clients_lose_nothing(cluster):
    url, _, local, _ = cluster
    x = np.random.default_rng(1).standard_normal(SHAPE).astype(np.float32)
    ok, wrong, errors = _load(url, 1000, 8, local.infer(x), x)
    assert (ok, wrong, errors) == (1000, 0, [])


def test_a_replica_killed_mid_load_is_replaced(cluster):
    import ray
    from ray import serve

    url, _, local, _ = cluster
    x = np.random.default_rng(2).standard_normal(SHAPE).astype(np.float32)
    expected = local.infer(x)
    replicas = [a for a in ray.util.list_named_actors(all_namespaces=True)
                if a["namespace"] == "serve" and "SERVE_REPLICA" in a["name"]]
    assert len(replicas) == 2, replicas
    victim = ray.get_actor(replicas[0]["name"], namespace="serve")
    killed = threading.Event()

    def kill_at(i):
        if i == 100 and not killed.is_set():
            killed.set()
            ray.kill(victim, no_restart=True)

    ok, wrong, during = _load(url, 400, 8, expected, x, on_done=kill_at)
    assert killed.is_set() and wrong == 0 and ok + len(during) == 400
    assert len(during) <= 8, during  # at most the requests in flight on the killed replica (8 clients)
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:  # Ray replaces the replica
        status = serve.status().applications["dirac_deploy"].deployments["oip"]
        running = status.replica_states.get("RUNNING", 0)
        if running == 2 and str(status.status).endswith("HEALTHY"):
            break
        time.sleep(1)
    else:
        pytest.fail(f"the killed replica was not replaced: {status}")
    ok, wrong, errors = _load(url, 200, 8, expected, x)
    assert (ok, wrong, errors) == (200, 0, [])  # none fails after the replacement
    print(f"\nreplica kill: {len(during)} of 400 requests failed during the kill, none of 200 after it")


def test_stopping_leaves_no_ray_process(cluster):
    from dirac_deploy.serve_ray import stop_ray

    assert _ray_processes()  # the cluster runs
    stop_ray()
    deadline = time.monotonic() + 30
    while _ray_processes() and time.monotonic() < deadline:
        time.sleep(0.5)
    assert _ray_processes() == []


def test_cli_engine_ray_serves_and_stops_on_sigterm(tmp_path):
    """After the module's cluster is gone: `serve --engine ray` starts its own, serves, and SIGTERM stops both."""
    import tritonclient.http as th

    onnx_path = tmp_path / "digits.onnx"
    export_file(embedded_checkpoint(), onnx_path)
    x = np.random.default_rng(3).standard_normal(SHAPE).astype(np.float32)
    want = load_served_model(ModelSource("d", onnx_path)).infer(x)
    with running_server(str(onnx_path), "--engine", "ray", "--replicas", "1", "--cpus-per-replica", "0.5",
                        "--max-batch", "4", "--ray-batching", "ray", timeout=180) as (url, proc):
        got = _infer(th.InferenceServerClient(url.removeprefix("http://")), x)
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
        ok, wrong, errors = _load(url, 64, 8, want, x)  # concurrent: Ray's @serve.batch runs them together
        assert (ok, wrong, errors) == (64, 0, [])
        metrics = httpx.get(f"{url}/metrics").text
        values = {line.split("{")[0]: float(line.split()[-1]) for line in metrics.splitlines()
                  if line.startswith("dirac_deploy_batch_images_")}
        count, total = values["dirac_deploy_batch_images_count"], values["dirac_deploy_batch_images_sum"]
        assert count == 65 and total > count, (count, total)  # some requests ran in batches of several images
    assert proc.returncode == 0, proc.returncode
    err = proc.stderr.read()
    assert not [line for line in err.splitlines() if " INFO " in line or "WARNING" in line], err  # Ray's own logs
    deadline = time.monotonic() + 30
    while _ray_processes() and time.monotonic() < deadline:
        time.sleep(0.5)
    assert _ray_processes() == []


@pytest.mark.parametrize("delay", [3.0, 5.0, 7.0])
def test_sigterm_while_starting_exits_zero_and_leaves_no_ray_process(tmp_path, delay):
    """Round four: SIGTERM 4 s after start killed the process (rc -15) inside ray.init and left
    ray::DashboardAgent and ray::RuntimeEnvAgent orphaned. Now the signal is taken at any moment of the start:
    exit 0 (or the default -15 before our handler exists, when nothing has started yet), no Ray process left."""
    onnx_path = tmp_path / "digits.onnx"
    export_file(embedded_checkpoint(), onnx_path)
    proc = subprocess.Popen([sys.executable, "-m", "dirac_deploy.cli", "serve", str(onnx_path), "--engine", "ray",
                             "--replicas", "1", "--cpus-per-replica", "0.5", "--port", str(free_port())],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(delay)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode in (0, -signal.SIGTERM), (proc.returncode, out, err[-2000:])
    assert "Traceback" not in err, err[-2000:]
    deadline = time.monotonic() + 30
    while _ray_processes() and time.monotonic() < deadline:
        time.sleep(0.5)
    assert _ray_processes() == []


def test_a_local_cluster_starts_under_an_address_space_limit(tmp_path):
    """Round four: under an 8 GiB address-space limit every start failed ('unexpected ActorDiedError'): Ray
    mapped a ~7 GB object store. A serving-only cluster maps 256 MiB by default (--ray-object-store-mb)."""
    import resource

    onnx_path = tmp_path / "digits.onnx"
    export_file(embedded_checkpoint(), onnx_path)
    limit = 8 << 30
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "dirac_deploy.cli", "serve", str(onnx_path), "--engine", "ray",
                             "--replicas", "1", "--cpus-per-replica", "0.5", "--port", str(port)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_AS, (limit, limit)))
    try:
        deadline = time.monotonic() + 150
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/v2/health/ready", timeout=1.0).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.5)
        assert proc.poll() is None, proc.communicate()[1][-2000:]
        assert httpx.get(f"http://127.0.0.1:{port}/v2/health/ready", timeout=5).status_code == 200
    finally:
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err[-2000:]


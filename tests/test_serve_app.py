"""The serving app in-process (no sockets): the instance pool and the infer handler's edge cases."""

import asyncio
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np
import pytest

from dirac_deploy.data import embedded_checkpoint
from dirac_deploy.serve.app import create_app
from dirac_deploy.serve.instances import InstancePool
from dirac_deploy.serve.model import ModelSource, ServedModel, default_threads, load_served_model


def _model(runners, name="m", classes=4):
    return ServedModel(name, (1, 2, 2), classes, "test", runners, Path("test"), {})


def _call(app, method, path, **kw):
    async def go():
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as c:
            return await c.request(method, path, **kw)

    return asyncio.run(go())


def _json_request(x):
    return {"inputs": [{"name": "input", "shape": list(x.shape), "datatype": "FP32", "data": x.ravel().tolist()}]}


def test_pool_runs_requests_on_all_instances_at_once():
    """Two runners that each wait for the other: only a pool that runs both concurrently finishes."""
    barrier = threading.Barrier(2, timeout=10)

    def runner(x):
        barrier.wait()
        return x

    pool = InstancePool([runner, runner])

    async def two():
        return await asyncio.gather(pool.run_async(np.zeros(1)), pool.run_async(np.ones(1)))

    a, b = asyncio.run(two())
    assert a[0] == 0 and b[0] == 1
    pool.close()


def test_pool_gives_each_runner_one_request_at_a_time():
    active, peak, lock = {}, {}, threading.Lock()

    def make(i):
        def run(x):
            with lock:
                active[i] = active.get(i, 0) + 1
                peak[i] = max(peak.get(i, 0), active[i])
            time.sleep(0.005)
            with lock:
                active[i] -= 1
            return x * i

        return run

    pool = InstancePool([make(1), make(2)])
    with ThreadPoolExecutor(6) as ex:
        outs = list(ex.map(lambda k: pool.run(np.full(1, k)), range(30)))
    assert peak == {1: 1, 2: 1}  # both used, never twice at once
    assert all(o[0] in (k, 2 * k) for k, o in zip(range(30), outs))
    pool.close()


def test_default_threads_share_the_cores_between_instances():
    import os

    cores = len(os.sched_getaffinity(0))
    assert default_threads(1) is None  # the runtime's own default
    assert default_threads(cores) == 1
    assert default_threads(4 * cores) == 1


def test_runtime_failure_is_a_500_with_json_and_the_server_keeps_serving():
    calls = []

    def flaky(x):
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("out of memory")
        return np.zeros((x.shape[0], 4), np.float32)

    app = create_app({"m": _model([flaky])})
    body = _json_request(np.zeros((1, 1, 2, 2), np.float32))
    r = _call(app, "POST", "/v2/models/m/infer", json=body)
    assert r.status_code == 500 and "RuntimeError: out of memory" in r.json()["error"]
    r = _call(app, "POST", "/v2/models/m/versions/1/infer", json=body)
    assert r.status_code == 200 and r.json()["outputs"][0]["shape"] == [1, 4]
    metrics = _call(app, "GET", "/metrics").text
    assert 'dirac_deploy_requests_total{model="m",status="500"} 1.0' in metrics
    assert 'dirac_deploy_requests_total{model="m",status="200"} 1.0' in metrics


def test_routes_besides_infer_stay_on_the_framework():
    app = create_app({"m": _model([lambda x: np.zeros((x.shape[0], 4), np.float32)])})
    assert _call(app, "GET", "/v2/health/ready").status_code == 200
    meta = _call(app, "GET", "/v2/models/m").json()
    assert meta["parameters"]["instances"] == "1" and meta["outputs"][0]["shape"] == [-1, 4]
    assert _call(app, "GET", "/v2/models/m/infer").status_code in (404, 405)  # infer is POST only
    assert _call(app, "POST", "/v2/models/m/infer/extra", json={}).status_code == 404


def test_body_limit_counts_streamed_chunks_without_a_content_length():
    app = create_app({"m": _model([lambda x: x])}, max_body_bytes=1000)

    async def chunks():
        for _ in range(5):
            yield b" " * 300

    r = _call(app, "POST", "/v2/models/m/infer", content=chunks())
    assert r.status_code == 413 and "exceeds the limit of 1000 bytes" in r.json()["error"]


@pytest.mark.parametrize("runtime,instances", [("onnxruntime", 1), ("onnxruntime", 3), ("torch", 2)])
def test_served_model_instances_give_identical_answers(runtime, instances):
    """Every instance computes the same function: concurrent calls over all of them agree exactly."""
    model = load_served_model(ModelSource("digits", embedded_checkpoint()), runtime, threads=1, instances=instances)
    x = np.random.default_rng(0).standard_normal((2, 3, 32, 32)).astype(np.float32)
    want = model.infer(x)

    async def many():
        return await asyncio.gather(*(model.infer_async(x) for _ in range(8)))

    for got in asyncio.run(many()):
        np.testing.assert_array_equal(got, want)
    assert model.metadata()["parameters"]["instances"] == str(instances)
    model.instances.close()

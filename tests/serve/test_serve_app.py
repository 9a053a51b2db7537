"""The serving app in-process (no sockets): the instance pool and the infer handler's edge cases."""

import asyncio
import json
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
from dirac_deploy.serve.limits import ServeLimits
from dirac_deploy.serve.model import ModelSource, ServedModel, default_threads
from dirac_deploy.serve_files import load_served_model


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
    assert 'dirac_deploy_requests_total{model="m",protocol="http",status="500"} 1.0' in metrics
    assert 'dirac_deploy_requests_total{model="m",protocol="http",status="200"} 1.0' in metrics


def test_routes_besides_infer_stay_on_the_framework():
    app = create_app({"m": _model([lambda x: np.zeros((x.shape[0], 4), np.float32)])})
    assert _call(app, "GET", "/v2/health/ready").status_code == 200
    meta = _call(app, "GET", "/v2/models/m").json()
    assert meta["parameters"]["instances"] == "1" and meta["outputs"][0]["shape"] == [-1, 4]
    assert _call(app, "GET", "/v2/models/m/infer").status_code in (404, 405)  # infer is POST only
    assert _call(app, "POST", "/v2/models/m/infer/extra", json={}).status_code == 404


def test_body_limit_counts_streamed_chunks_without_a_content_length():
    app = create_app({"m": _model([lambda x: x])}, limits=ServeLimits(max_body_bytes=1000))

    async def chunks():
        for _ in range(5):
            yield b" " * 300

    r = _call(app, "POST", "/v2/models/m/infer", content=chunks())
    assert r.status_code == 413 and "exceeds the limit of 1000 bytes" in r.json()["error"]


def test_long_json_integers_and_oversized_json_are_4xx_not_500():
    app = create_app({"m": _model([lambda x: np.zeros((x.shape[0], 4), np.float32)])}, limits=ServeLimits(max_json_bytes=4096))
    big = "9" * 5000
    for body in ('{"id": %s, "inputs": []}' % big, '{"inputs": [{"name": "input", "shape": [%s], "datatype": "FP32", '
                 '"data": [1]}]}' % big, '{"%s": 1}' % big.replace("9", "a"), '{"inputs": [], "x": 1e99999999}',
                 '{"inputs": [{"name": "input", "shape": [1, 1, 2, 2], "datatype": "FP32", "data": [%s, 1, 1, 1]}]}'
                 % big):
        r = _call(app, "POST", "/v2/models/m/infer", content=body.encode())
        assert 400 <= r.status_code < 500 and "error" in r.json(), (body[:40], r.status_code, r.text[:200])
    r = _call(app, "POST", "/v2/models/m/infer", json=_json_request(np.zeros((300, 1, 2, 2), np.float32)))
    assert r.status_code == 413 and "max_json_mb" in r.json()["error"]
    r = _call(app, "POST", "/v2/models/m/infer", json=_json_request(np.zeros((1, 1, 2, 2), np.float32)))
    assert r.status_code == 200


def test_request_bodies_held_at_once_are_bounded():
    """Bodies in flight share one budget: a request that would go past it gets a JSON 503, and the budget is
    given back when a request is answered."""
    app = create_app({"m": _model([lambda x: np.zeros((x.shape[0], 4), np.float32)])},
                     limits=ServeLimits(max_inflight_bytes=1500))
    body = json.dumps(_json_request(np.zeros((1, 1, 2, 2), np.float32))).encode()
    release = asyncio.Event()

    async def slow_body():
        yield body[:len(body) // 2] + b" " * 1000  # JSON allows the whitespace; 1000+ bytes held from here on
        await release.wait()
        yield body[len(body) // 2:]

    async def go():
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as c:
            first = asyncio.create_task(c.post("/v2/models/m/infer", content=slow_body()))
            await asyncio.sleep(0.2)
            refused = await c.post("/v2/models/m/infer", content=body + b" " * 600)
            release.set()
            done = await first
            again = await c.post("/v2/models/m/infer", content=body + b" " * 600)
            return refused, done, again

    refused, done, again = asyncio.run(go())
    assert refused.status_code == 503 and "max_inflight_mb" in refused.json()["error"]
    assert done.status_code == 200 and again.status_code == 200


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


# --- dynamic batching ---------------------------------------------------------------------------------------

def _recording_pool(gate: threading.Event | None = None):
    """One runner that records the batch sizes it ran and returns row i's first element as its logits."""
    sizes = []

    def run(x):
        if gate is not None:
            gate.wait(10)
        sizes.append(len(x))
        return x.reshape(len(x), -1)[:, :1] * np.ones((1, 4), np.float32)

    return InstancePool([run]), sizes


def test_batcher_runs_a_lone_request_at_once_and_batches_the_queue():
    from dirac_deploy.serve.batching import DynamicBatcher

    gate = threading.Event()
    pool, sizes = _recording_pool(gate)
    batcher = DynamicBatcher(pool, max_batch=4)
    xs = [np.full((1 + i % 2, 3), float(i), np.float32) for i in range(6)]  # 1,2,1,2,1,2 images

    async def go():
        tasks = [asyncio.create_task(batcher.infer(x)) for x in xs]
        await asyncio.sleep(0.05)  # all queued behind the first, which waits at the gate
        gate.set()
        return await asyncio.gather(*tasks)

    outs = asyncio.run(go())
    # First request alone (the instance was free); then the queue in order while it fits in 4 images.
    assert sizes == [1, 3, 3, 2]
    for x, out in zip(xs, outs):  # every caller gets exactly its own rows back
        np.testing.assert_array_equal(out, x[:, :1] * np.ones((1, 4), np.float32))
    pool.close()


def test_batcher_passes_a_failure_to_every_caller_in_the_batch_and_recovers():
    from dirac_deploy.serve.batching import DynamicBatcher

    calls = []

    def run(x):
        calls.append(len(x))
        if len(calls) == 2:
            raise RuntimeError("boom")
        return np.zeros((len(x), 4), np.float32)

    gate_pool = InstancePool([run])
    batcher = DynamicBatcher(gate_pool, max_batch=8)

    async def go():
        results = await asyncio.gather(*(batcher.infer(np.zeros((1, 3), np.float32)) for _ in range(4)),
                                       return_exceptions=True)
        after = await batcher.infer(np.zeros((2, 3), np.float32))
        return results, after

    results, after = asyncio.run(go())
    assert calls[:2] == [1, 3]
    assert not isinstance(results[0], Exception)
    assert all(isinstance(r, RuntimeError) and "boom" in str(r) for r in results[1:])
    assert after.shape == (2, 4)
    gate_pool.close()


def test_batched_model_answers_match_unbatched_ones():
    """Real model, max_batch 8, 16 concurrent callers: each answer equals its own batch-1 result."""
    model = load_served_model(ModelSource("digits", embedded_checkpoint()), threads=1, max_batch=8)
    xs = [np.random.default_rng(i).standard_normal((1, 3, 32, 32)).astype(np.float32) for i in range(16)]
    want = [model.infer(x) for x in xs]

    timings = [{} for _ in xs]

    async def many():
        return await asyncio.gather(*(model.infer_async(x, t) for x, t in zip(xs, timings)))

    for got, ref in zip(asyncio.run(many()), want):
        np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-5)
    assert all(0 < t["start"] <= t["end"] for t in timings)  # every caller learns when its batch ran
    assert len({t["start"] for t in timings}) < len(xs)  # and some ran together
    assert model.metadata()["parameters"]["dynamic_batch_max_images"] == "8"
    model.instances.close()


def test_metrics_report_queue_compute_and_batch_sizes():
    def slow(x):
        time.sleep(0.05)
        return np.zeros((len(x), 4), np.float32)

    app = create_app({"m": ServedModel("m", (1, 2, 2), 4, "test", [slow], Path("test"), {}, max_batch=8)})
    body = _json_request(np.zeros((1, 1, 2, 2), np.float32))

    async def go():
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as c:
            replies = await asyncio.gather(*(c.post("/v2/models/m/infer", json=body) for _ in range(4)))
            return replies, (await c.get("/metrics")).text

    replies, text = asyncio.run(go())
    assert [r.status_code for r in replies] == [200] * 4
    # The first request ran alone; the three that queued behind it ran as one batch of 3.
    assert 'dirac_deploy_batch_images_sum{model="m"} 10.0' in text
    assert 'dirac_deploy_batch_images_bucket{le="1.0",model="m"} 1.0' in text
    assert 'dirac_deploy_compute_duration_seconds_count{model="m"} 4.0' in text
    sums = {line.split()[0]: float(line.split()[1]) for line in text.splitlines() if "_sum{" in line}
    assert sums['dirac_deploy_compute_duration_seconds_sum{model="m"}'] >= 4 * 0.05
    assert sums['dirac_deploy_queue_duration_seconds_sum{model="m"}'] >= 3 * 0.04  # three waited for the first

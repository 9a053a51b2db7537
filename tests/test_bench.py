"""Benchmark harness: JSON schema, skip logic, every variant really runs. No timing assertions (noisy CI)."""

import json
import time

import pytest
import torch
from click.testing import CliRunner

from dirac_deploy.bench.report import Row, headline_rows
from dirac_deploy.bench.run import BenchConfig, run_benchmark
from dirac_deploy.bench.timing import measure, summarize
from dirac_deploy.cli import main
from dirac_deploy.errors import DiracDeployError

import reference

RECORD_KEYS = {"variant", "backend", "device", "batch", "status", "latency_ms", "throughput", "peak_mem_mb",
               "gflops", "peak_fraction"}
FAST = dict(warmup=1, iters=5, max_seconds=0.05)


@pytest.fixture(scope="module")
def tiny_ckpt(tmp_path_factory):
    p = tmp_path_factory.mktemp("bench") / "tiny.pt7"
    torch.save(reference.as_flat_params(reference.define_params("cifar", 10, 0.5, seed=9)), p)
    return p


@pytest.fixture(scope="module")
def tiny_result(tiny_ckpt):
    return run_benchmark(BenchConfig(model_path=tiny_ckpt, batches=(1, 2), threads=1, **FAST))


def test_every_variant_runs_on_every_cpu_backend(tiny_result):
    recs = tiny_result.records
    assert len(recs) == 3 * 3 * 2
    assert {(r["variant"], r["backend"]) for r in recs} == {
        (v, b) for v in ("unfolded", "folded", "resnet") for b in ("torch", "onnxruntime", "onnxruntime-noopt")}
    for r in recs:
        assert set(r) >= RECORD_KEYS
        assert r["status"] == "ok", r
        lat = r["latency_ms"]
        assert set(lat) == {"p50", "p90", "p99", "mean", "stdev"}
        assert 0 < lat["p50"] <= lat["p90"] <= lat["p99"]
        assert r["throughput"] == pytest.approx(r["batch"] / (lat["p50"] / 1e3))
        assert r["gflops"] > 0 and r["peak_fraction"] > 0 and r["iters"] >= 5
        assert r["threads"] == 1


def test_env_records_what_is_needed_to_read_the_numbers(tiny_result):
    env = tiny_result.env
    for key in ("cpu", "cores", "threads", "load_average", "versions", "git_sha", "device", "model", "peak"):
        assert key in env
    assert env["versions"]["torch"] and env["versions"]["onnxruntime"]
    assert set(env["peak"]) == {"torch", "onnxruntime", "onnxruntime-noopt"}
    assert all(p["gflops"] > 0 for p in env["peak"].values())
    json.dumps(tiny_result.to_json())  # serializable as is


def test_unavailable_backends_are_skipped_with_a_reason_never_a_number(tiny_ckpt):
    cfg = BenchConfig(model_path=tiny_ckpt, batches=(1,), threads=1, backends=("torch", "tensorrt", "cuda-graph"),
                      variants=("folded",), **FAST)
    recs = {r["backend"]: r for r in run_benchmark(cfg).records}
    assert recs["torch"]["status"] == "ok"
    for backend in ("tensorrt", "cuda-graph"):
        assert recs[backend]["status"].startswith("skipped: ") and "CUDA" in recs[backend]["status"]
        assert recs[backend]["latency_ms"] is None and recs[backend]["throughput"] is None


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the no-GPU path")
def test_cuda_device_without_gpu_fails_at_once_with_one_line(tiny_ckpt, tmp_path):
    cfg = BenchConfig(model_path=tiny_ckpt, device="cuda", batches=(1,), threads=1, variants=("folded",), **FAST)
    start = time.perf_counter()
    with pytest.raises(DiracDeployError, match="no CUDA device is visible"):
        run_benchmark(cfg)
    res = CliRunner().invoke(main, ["bench", str(tiny_ckpt), "--device", "cuda", "--json", str(tmp_path / "b.json"),
                                    "--plot", str(tmp_path / "b.png")])
    assert res.exit_code == 1 and len(res.stderr.strip().splitlines()) == 1 and "no CUDA device" in res.stderr
    assert time.perf_counter() - start < 10 and not (tmp_path / "b.json").exists()


def test_plain_file_has_no_unfolded_variant(tmp_path, tiny_ckpt):
    assert CliRunner().invoke(main, ["fold", str(tiny_ckpt), "-o", str(tmp_path / "p.pth")]).exit_code == 0
    cfg = BenchConfig(model_path=tmp_path / "p.pth", batches=(1,), threads=1, backends=("torch",), **FAST)
    recs = {r["variant"]: r for r in run_benchmark(cfg).records}
    assert recs["folded"]["status"] == "ok" and recs["resnet"]["status"] == "ok"
    assert recs["unfolded"]["status"].startswith("skipped: MODEL is already folded")


def test_headline_ratios_are_taken_within_one_backend_and_batch():
    def rec(variant, backend, batch, p50):
        return {"variant": variant, "backend": backend, "batch": batch, "status": "ok", "gflops": 1.0,
                "peak_fraction": 0.5, "latency_ms": {"p50": p50}}
    recs = [rec("folded", "torch", 1, 10.0), rec("unfolded", "torch", 1, 15.0), rec("resnet", "torch", 1, 12.0),
            rec("folded", "onnxruntime", 1, 4.0), rec("unfolded", "onnxruntime", 1, 100.0),
            {"variant": "resnet", "backend": "onnxruntime", "batch": 1, "status": "skipped: x"}]
    rows = {r.backend: r for r in headline_rows(recs)}
    assert rows["torch"].speedup_vs_unfolded == pytest.approx(1.5)
    assert rows["torch"].speedup_vs_resnet == pytest.approx(1.2)
    assert rows["onnxruntime"].speedup_vs_unfolded == pytest.approx(25.0)
    assert rows["onnxruntime"].speedup_vs_resnet is None
    assert Row("t", 1, None, 3.0, None, None, None).speedup_vs_unfolded is None


def test_measure_counts_and_bounds():
    calls = []
    lat = measure(lambda: calls.append(1), warmup=2, iters=7)
    assert len(calls) == 9 and lat.count == 7
    lat = measure(lambda: time.sleep(0.01), warmup=0, iters=1000, min_iters=5, max_seconds=0.05)
    assert 5 <= lat.count < 20
    s = summarize([1.0, 2.0, 3.0, 4.0, 100.0])
    assert s.p50 == 3.0 and s.mean == 22.0 and s.p99 > s.p90 > s.p50


def test_bench_cli_writes_json_plot_and_table(tmp_path, tiny_ckpt):
    res = CliRunner().invoke(main, ["bench", str(tiny_ckpt), "--batch", "1,2", "--threads", "1", "--iters", "5",
                                    "--warmup", "1", "--max-seconds", "0.1", "--backends", "torch,onnxruntime",
                                    "--json", str(tmp_path / "b.json"), "--plot", str(tmp_path / "b.png")])
    assert res.exit_code == 0, res.output
    payload = json.loads((tmp_path / "b.json").read_text())
    assert set(payload) == {"env", "records"} and len(payload["records"]) == 12
    assert (tmp_path / "b.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "folded vs unfolded" in res.stdout and "practical peak" in res.stdout


@pytest.mark.parametrize("args,fragment", [(["--backends", "torch,tpu"], "unknown backend"),
                                           (["--batch", "0,8"], "integers in 1..1024")])
def test_bench_cli_rejects_bad_options(tmp_path, args, fragment):
    res = CliRunner().invoke(main, ["bench", *args, "--json", str(tmp_path / "b.json")])
    assert res.exit_code == 2 and fragment in res.output
    assert not (tmp_path / "b.json").exists()


@pytest.mark.gpu
def test_cuda_backends_run_on_a_gpu(tiny_ckpt):
    cfg = BenchConfig(model_path=tiny_ckpt, device="cuda", batches=(1, 4), backends=("torch", "cuda-graph", "torch-compile"),
                      **FAST)
    for r in run_benchmark(cfg).records:
        assert r["status"] == "ok", r
        assert r["peak_mem_mb"] is not None

"""Benchmark harness: JSON schema, variants and skip logic, interleaved rounds, matched baselines, the table.
No timing assertions (noisy CI): speed is measured by benchmarks/, never asserted here."""

import json
import time
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from dirac_deploy.bench.models import matched_resnet
from dirac_deploy.bench.report import Row, headline_rows
from dirac_deploy.bench.run import BenchConfig, run_benchmark
from dirac_deploy.cli import main
from dirac_deploy.errors import DiracDeployError
from dirac_deploy.models.cifar_resnet import cifar_resnet
from dirac_deploy.spec import cifar_spec, imagenet_spec
from dirac_deploy.summary import count_parameters
from dirac_deploy.timing import ratio_stats, summarize, time_interleaved

import reference

RECORD_KEYS = {"variant", "backend", "device", "batch", "status", "latency_ms", "throughput", "peak_mem_mb",
               "gflops", "peak_fraction"}
FAST = dict(warmup=1, iters=6, max_seconds=0.05, rounds=3)
CPU_FAST = ("torch", "onnxruntime", "onnxruntime-noopt")  # torch-compile has its own (slower) test


@pytest.fixture(scope="module")
def tiny_ckpt(tmp_path_factory):
    p = tmp_path_factory.mktemp("bench") / "tiny.pt7"
    torch.save(reference.as_flat_params(reference.define_params("cifar", 10, 0.5, seed=9)), p)
    return p


@pytest.fixture(scope="module")
def tiny_result(tiny_ckpt):
    return run_benchmark(BenchConfig(model_path=tiny_ckpt, batches=(1, 2), threads=1, backends=CPU_FAST, **FAST))


def test_every_variant_runs_where_it_applies_and_is_skipped_with_a_reason_elsewhere(tiny_result):
    recs = {(r["variant"], r["backend"], r["batch"]): r for r in tiny_result.records}
    variants = {"folded", "unfolded-as-trained", "unfolded-exported", "resnet"}  # no v1: no absorbed form
    assert {k[0] for k in recs} == variants and len(recs) == 4 * 3 * 2
    for (variant, backend, batch), r in recs.items():
        assert set(r) >= RECORD_KEYS
        if variant == "unfolded-exported" and backend == "torch":
            assert r["status"] == "skipped: an ONNX-only variant: it runs on the ONNX backends"
            assert r["latency_ms"] is None and r["throughput"] is None
            continue
        assert r["status"] == "ok", r
        lat = r["latency_ms"]
        assert 0 < lat["p25"] <= lat["p50"] <= lat["p75"] <= lat["p99"] and lat["spread"] >= 0
        assert r["throughput"] == pytest.approx(r["batch"] / (lat["p50"] / 1e3))
        assert r["gflops"] > 0 and r["peak_fraction"] > 0 and r["threads"] == 1
        assert len(r["round_p50_ms"]) == 3 and r["prepare_s"] >= 0
        if variant != "folded":
            vs = r["vs_folded"]
            assert len(vs["rounds"]) == 3 and vs["iqr"][0] <= vs["median"] <= vs["iqr"][1]
        if backend != "torch" and variant != "folded":
            assert r["export_s"] > 0  # what producing that ONNX graph cost


def test_env_records_what_is_needed_to_read_the_numbers(tiny_result):
    env = tiny_result.env
    for key in ("cpu", "cores", "threads", "load_average", "versions", "git_sha", "device", "model", "peak",
                "rounds", "baseline", "variants", "thresholds"):
        assert key in env
    assert env["versions"]["torch"] and env["versions"]["onnxruntime"]
    assert set(env["peak"]) == set(CPU_FAST) and all(p["gflops"] > 0 for p in env["peak"].values())
    assert env["baseline"] == "CIFAR ResNet-8 at widths [8, 16, 32] (He et al.)"
    assert env["variants"]["resnet"]["params"] > 0 and env["variants"]["unfolded-exported"]["export_s"] > 0
    payload = json.loads(json.dumps(tiny_result.to_json()))  # serializable as is
    assert payload["schema"] == "dirac-deploy/bench" and len(payload["rows"]) == 3 * 2


def test_headline_rows_take_the_best_alternative_on_the_same_backend(tiny_result):
    rows = {(r.backend, r.batch): r for r in headline_rows(tiny_result.records)}
    torch_row, ort_row = rows[("torch", 1)], rows[("onnxruntime", 1)]
    assert torch_row.best_alternative.against == "unfolded-as-trained"  # the only alternative in eager PyTorch
    assert ort_row.best_alternative.against in ("unfolded-as-trained", "unfolded-exported")
    assert ort_row.best_alternative_ms <= min(
        r["latency_ms"]["p50"] for r in tiny_result.records
        if r["backend"] == "onnxruntime" and r["batch"] == 1 and r["variant"].startswith("unfolded"))
    assert ort_row.vs_resnet.against == "resnet" and ort_row.vs_absorbed is None


def test_headline_rows_from_synthetic_records():
    def rec(variant, p50, ratio=None):
        r = {"variant": variant, "backend": "onnxruntime", "batch": 1, "status": "ok", "gflops": 1.0,
             "peak_fraction": 0.5, "latency_ms": {"p50": p50}}
        if ratio:
            r["vs_folded"] = {"median": ratio, "iqr": [ratio - 0.1, ratio + 0.1], "rounds": [ratio]}
        return r

    recs = [rec("folded", 10.0), rec("unfolded-as-trained", 30.0, 3.0), rec("unfolded-exported", 10.5, 1.05),
            {"variant": "resnet", "backend": "onnxruntime", "batch": 1, "status": "skipped: x"}]
    (row,) = headline_rows(recs)
    best = row.best_alternative
    assert best.against == "unfolded-exported" and best.median == 1.05 and best.iqr == pytest.approx((0.95, 1.15))
    assert row.best_alternative_ms == 10.5
    assert row.vs_as_trained.median == 3.0 and row.vs_resnet is None
    assert Row("t", 1, None).best_alternative is None


def test_matched_resnets():
    assert count_parameters(cifar_resnet(20)) == 269_722  # He et al.'s CIFAR ResNet-20: 0.27M
    model, name = matched_resnet(cifar_spec(34, width=2.0), (3, 32, 32), 10)
    assert name == "CIFAR ResNet-32 at widths [32, 64, 128] (He et al.)" and model.depth == 32
    model, name = matched_resnet(imagenet_spec(18), (3, 224, 224), 1000)
    assert name == "ResNet-18" and count_parameters(model) == 11_689_512
    model, name = matched_resnet(imagenet_spec(34, width=0.5), (3, 224, 224), 1000)
    assert name == "ResNet-34 at widths [32, 64, 128, 256]"
    model, name = matched_resnet(None, (1, 32, 32), 10)
    assert model is None and "no ResNet baseline" in name


def test_a_baseline_that_cannot_be_matched_is_skipped_with_the_reason(tmp_path):
    from dirac_deploy import fold_checkpoint

    ckpt = reference.define_scaled_identity((8, 16), (1, 1))
    torch.save(ckpt, tmp_path / "si.pth")
    fold_checkpoint(tmp_path / "si.pth", tmp_path / "p.pth")
    cfg = BenchConfig(model_path=tmp_path / "p.pth", batches=(1,), threads=1, backends=("torch",), **FAST)
    recs = {r["variant"]: r for r in run_benchmark(cfg).records}
    assert recs["resnet"]["status"].startswith("skipped: no matched ResNet")
    assert recs["unfolded-as-trained"]["status"].startswith("skipped: MODEL is already folded")
    assert recs["folded"]["status"] == "ok"


def test_v1_models_show_both_fold_forms(tmp_path):
    torch.save(reference.as_v1_params_stats(reference.define_params_v1("cifar", 10, 0.5, seed=2)), tmp_path / "v1.pt7")
    cfg = BenchConfig(model_path=tmp_path / "v1.pt7", batches=(1,), threads=1, backends=("torch", "onnxruntime"),
                      **FAST)
    result = run_benchmark(cfg)
    recs = {(r["variant"], r["backend"]): r for r in result.records}
    assert recs[("folded-absorbed", "torch")]["status"] == "ok"
    assert recs[("folded-absorbed", "onnxruntime")]["status"] == "ok"
    assert result.env["variants"]["folded-absorbed"]["params"] > result.env["variants"]["folded"]["params"]
    assert all(row.vs_absorbed is not None for row in headline_rows(result.records))


def test_torch_compile_is_a_backend_with_its_compile_time_recorded(tiny_ckpt):
    cfg = BenchConfig(model_path=tiny_ckpt, batches=(1,), threads=1, backends=("torch-compile",),
                      variants=("folded", "unfolded-as-trained"), **FAST)
    recs = {r["variant"]: r for r in run_benchmark(cfg).records}
    for r in recs.values():
        assert r["status"] == "ok", r
        assert r["prepare_s"] > 0.5  # the compile: paid once, recorded, not timed
    assert recs["unfolded-as-trained"]["vs_folded"]["median"] > 0


def test_interleaved_timing_counts_rotates_and_bounds():
    order = []
    calls = {n: (lambda n=n: order.append(n)) for n in ("a", "b", "c")}
    timed = time_interleaved(calls, rounds=3, iters=6, max_seconds=10.0)
    assert order[:3] == ["a", "b", "c"]  # one sizing call each, then the rounds
    rounds = order[3:]
    assert rounds[:6] == ["a", "a", "b", "b", "c", "c"] and rounds[6:12] == ["b", "b", "c", "c", "a", "a"]
    assert all(len(t.rounds) == 3 and t.latency.count == 6 for t in timed.values())
    slow = time_interleaved({"s": lambda: time.sleep(0.01)}, rounds=2, iters=1000, max_seconds=0.05)["s"]
    assert 2 <= slow.latency.count <= 6  # max_seconds bounds a slow call's count, at least one per round
    assert ratio_stats(timed["a"], timed["a"])["median"] == pytest.approx(1.0)
    s = summarize([1.0, 2.0, 3.0, 4.0, 100.0])
    assert s.p50 == 3.0 and s.mean == 22.0 and s.p99 > s.p90 > s.p50 and s.spread == pytest.approx(2 / 3)


def test_bench_cli_writes_json_plot_and_table(tmp_path, tiny_ckpt):
    res = CliRunner().invoke(main, ["bench", str(tiny_ckpt), "--batch", "1,2", "--threads", "1", "--iters", "6",
                                    "--rounds", "3", "--warmup", "1", "--max-seconds", "0.1",
                                    "--backends", "torch,onnxruntime",
                                    "--json", str(tmp_path / "b.json"), "--plot", str(tmp_path / "b.png")])
    assert res.exit_code == 0, res.output
    payload = json.loads((tmp_path / "b.json").read_text())
    assert {"env", "records", "rows", "units"} <= set(payload) and len(payload["records"]) == 4 * 2 * 2
    assert payload["version"] == 4 and all("folded_ms" in r for r in payload["rows"])
    assert payload["units"]["agreement"].startswith("fraction") and payload["units"]["latency_ms"].startswith("ms")
    assert (tmp_path / "b.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    for column in ("vs best alternative", "vs as-trained", "vs ResNet", "practical peak", "onnxruntime"):
        assert column in res.stdout


def test_bench_writes_into_its_own_directory_by_default(tmp_path, tiny_ckpt, monkeypatch):
    monkeypatch.chdir(tmp_path)
    res = CliRunner().invoke(main, ["bench", str(tiny_ckpt), "--batch", "1", "--threads", "1", "--iters", "3",
                                    "--rounds", "1", "--warmup", "1", "--max-seconds", "0.1", "--backends", "torch"])
    assert res.exit_code == 0, res.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bench-out"]
    assert sorted(p.name for p in (tmp_path / "bench-out").iterdir()) == ["bench.json", "bench.png"]
    assert "CPU: " in res.output and "VNNI" in res.output  # the features every result is read against


def test_bench_json_to_stdout(tiny_ckpt):
    res = CliRunner().invoke(main, ["bench", str(tiny_ckpt), "--batch", "1", "--threads", "1", "--iters", "3",
                                    "--rounds", "1", "--warmup", "1", "--max-seconds", "0.1", "--backends", "torch",
                                    "--json", "-", "--no-plot"])
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["schema"] == "dirac-deploy/bench"


@pytest.mark.parametrize("args,fragment", [(["--backends", "torch,tpu"], "unknown backend"),
                                           (["--batch", "0,8"], "integers in 1..1024")])
def test_bench_cli_rejects_bad_options(tmp_path, args, fragment):
    res = CliRunner().invoke(main, ["bench", *args, "--json", str(tmp_path / "b.json")])
    assert res.exit_code == 2 and fragment in res.output
    assert not (tmp_path / "b.json").exists()


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


@pytest.mark.gpu
def test_cuda_backends_run_on_a_gpu(tiny_ckpt):
    cfg = BenchConfig(model_path=tiny_ckpt, device="cuda", batches=(1, 4),
                      backends=("torch", "cuda-graph", "torch-compile"), **FAST)
    for r in run_benchmark(cfg).records:
        if r["variant"] == "unfolded-exported":
            continue
        assert r["status"] == "ok", r
        assert r["peak_mem_mb"] is not None


def test_tables_keep_their_headline_whole_at_100_columns():
    """The committed results rendered on an 80- and a 100-column terminal: every headline speed-up and every
    low-precision speed-up is printed whole (median and IQR), nothing in those columns is cut with '…'."""
    import io

    from rich.console import Console

    from dirac_deploy.bench.report import headline_rows, lowp_rows
    from dirac_deploy.bench.run import BenchResult
    from dirac_deploy.cli.tables import print_bench

    results = Path(__file__).resolve().parents[1] / "benchmarks" / "results"
    for name in ("cpu-diracnet18.json", "cpu-lowp-noisy.json"):
        doc = json.loads((results / name).read_text())
        for width in (80, 100):
            buf = io.StringIO()
            print_bench(Console(file=buf, width=width, highlight=False), BenchResult(doc["env"], doc["records"]))
            text = buf.getvalue()
            assert max(len(line) for line in text.splitlines()) <= width
            for row in headline_rows(doc["records"]):
                r = row.best_alternative
                assert f"{r.median:.2f}x ({r.iqr[0]:.2f}-{r.iqr[1]:.2f})" in text, (name, width)
            for row in lowp_rows(doc["records"]):
                if row.speedup_vs_fp32_ort:
                    s = row.speedup_vs_fp32_ort
                    assert f"{s.median:.2f}x ({s.iqr[0]:.2f}-{s.iqr[1]:.2f})" in text, (name, width)


def test_lowp_speedups_read_the_same_way_in_old_and_new_files():
    """Version 2 files recorded t_artifact / t_fp32 (`vs_fp32_ort`); version 3 records the speed-up."""
    from dirac_deploy.bench.report import lowp_rows

    base = {"lowp": True, "lowp_name": "int8", "batch": 1, "status": "ok", "latency_ms": {"p50": 1.0}}
    old = lowp_rows([{**base, "vs_fp32_ort": {"median": 0.5, "iqr": [0.4, 0.8]}}])[0]
    new = lowp_rows([{**base, "speedup_vs_fp32_ort": {"median": 2.0, "iqr": [1.25, 2.5]}}])[0]
    assert old.speedup == new.speedup == 2.0
    assert old.speedup_vs_fp32_ort.iqr == new.speedup_vs_fp32_ort.iqr == (1.25, 2.5)


def test_progress_reports_exactly_the_steps_the_run_announces():
    from dirac_deploy import data

    steps, plans = [], []
    cfg = BenchConfig(model_path=data.embedded_checkpoint(), batches=(1, 2), threads=1,
                      backends=("torch", "onnxruntime", "tensorrt"), precisions=("int8", "bf16"), **FAST)
    run_benchmark(cfg, steps.append, on_plan=plans.append)
    assert plans == [steps] and len(steps) > 10  # by name and in order; tensorrt: its peak step, then skipped
    assert "int8-identity-onnxruntime: build and prove" in steps and "practical peak on tensorrt" in steps


def test_each_record_carries_its_own_warnings_not_every_rows():
    from dirac_deploy.bench.run import _warnings

    def rec(spread, ratio_iqr=None):
        r = {"latency_ms": {"spread": spread}}
        if ratio_iqr:
            r["vs_folded"] = {"median": 1.0, "iqr": list(ratio_iqr)}
        return r

    recs = {"ref": rec(0.5), "a": rec(0.01, (0.99, 1.01)), "b": rec(0.6, (0.5, 1.5))}
    got = _warnings(recs, {"load_average": [0.1], "cores": 2}, "batch 1", "ref")
    assert got["a"] == ["batch 1: ref latency spread (p75-p25)/p50 = 0.50"]  # the reference's, not b's
    assert len(got["b"]) == 3 and all("ref" in w or "b " in w for w in got["b"])
    assert len(got["ref"]) == 3  # every ratio is taken against it
    busy = _warnings(recs, {"load_average": [3.0], "cores": 2}, "batch 1", "ref")
    assert all(w[0].startswith("machine busy") for w in busy.values())

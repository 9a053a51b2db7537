"""quantize.speed: the speed proof every low-precision artifact carries, and `--min-speedup`'s refusal. The
clock is faked (a timer returning chosen latencies): no assertion here depends on this machine's speed."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from dirac_deploy import data
from dirac_deploy.cli import main
from dirac_deploy.quantize.run import SlowerThanFp32Error, quantize_file
from dirac_deploy.quantize.speed import ARTIFACT, FP32, SpeedProof, SpeedRow, faster_alternative
from dirac_deploy.timing import Timed

DIGITS = data.embedded_checkpoint()


def fake_timer(artifact_ms: float, fp32_ms: float):
    """Runs each call once (so a broken call still fails) and reports fixed latencies."""
    seen = []

    def timer(calls):
        for call in calls.values():
            call()
        seen.append(sorted(calls))
        return {ARTIFACT: Timed(((artifact_ms,) * 3,) * 5), FP32: Timed(((fp32_ms,) * 3,) * 5)}
    timer.seen = seen
    return timer


def test_speed_proof_is_recorded_in_the_artifact_and_its_report(tmp_path):
    timer = fake_timer(artifact_ms=1.0, fp32_ms=2.5)
    out = tmp_path / "q.onnx"
    report = quantize_file(DIGITS, out, speed_batch=4, timer=timer)
    doc = report.to_json()
    speed = doc["proof"]["speed"]
    assert doc["version"] == 4 and doc["units"]["accuracy_drop"] == "percentage points"
    assert all(r["decision"] == "accepted" and len(r["rounds"]) == 5 for r in speed["rows"])
    assert timer.seen == [[ARTIFACT, FP32]] * 2  # batch 1 and the batch asked for, both sides each time
    assert [r["batch"] for r in speed["rows"]] == [1, 4] and speed["ok"] and speed["min_speedup"] == 1.0
    assert all(r["speedup"] == pytest.approx(2.5) and r["fp32_ms"] == 2.5 for r in speed["rows"])
    assert speed["runtime"] == "onnxruntime" and set(speed["cpu"]) >= {"vnni", "amx", "avx512_bf16", "avx2"}
    from dirac_deploy.artifacts.onnx import read_onnx

    recorded = json.loads(read_onnx(out).metadata["dirac_deploy.low_precision_proof"])["speed"]
    assert recorded["rows"][0]["speedup"] == pytest.approx(2.5)


def test_slower_than_fp32_is_refused_naming_the_alternative_and_writes_nothing(tmp_path):
    out = tmp_path / "q.onnx"
    with pytest.raises(SlowerThanFp32Error, match=r"runs 0\.50x the fp32 chain on ONNX Runtime at batch 1.*"
                                                  r"nothing written.*"
                                                  r"OpenVINO IR.*`min_speedup=0` writes it anyway"):
        quantize_file(DIGITS, out, speed_batch=1, timer=fake_timer(artifact_ms=2.0, fp32_ms=1.0))
    assert list(tmp_path.iterdir()) == []
    # --min-speedup 0: written, with the (slow) times on record
    report = quantize_file(DIGITS, out, speed_batch=1, min_speedup=0, timer=fake_timer(2.0, 1.0))
    assert out.is_file() and report.artifact.proof.speed["rows"][0]["speedup"] == pytest.approx(0.5)
    assert report.artifact.proof.speed["ok"]


def test_the_refusal_is_one_line_with_exit_1(tmp_path, monkeypatch):
    from dirac_deploy.quantize import speed

    monkeypatch.setattr(speed, "interleaved_timer", lambda _seconds: fake_timer(3.0, 1.0))
    res = CliRunner().invoke(main, ["quantize", str(DIGITS), "-o", str(tmp_path / "q.onnx"), "--speed-batch", "1"])
    assert res.exit_code == 1 and "0.33x the fp32 chain" in res.output and "Traceback" not in res.output
    assert list(tmp_path.iterdir()) == []


def test_slowest_batch_decides_and_zero_turns_the_gate_off():
    rows = [SpeedRow(1, 1.0, 0.5, 2.0), SpeedRow(8, 4.0, 5.0, 0.8)]
    proof = SpeedProof("openvino", "fp32", 2, rows, {}, min_speedup=1.0)
    assert proof.slowest.batch == 8 and not proof.ok
    assert SpeedProof("openvino", "fp32", 2, rows, {}, min_speedup=0).ok
    assert SpeedProof("openvino", "fp32", 2, rows, {}, min_speedup=0.75).ok


def test_faster_alternative_names_a_command():
    assert "`target='openvino'`" in faster_alternative("int8", "onnxruntime")
    assert "GPU" in faster_alternative("fp16", "onnxruntime")


def spread_timer(ratios_per_pass: list[list[float]]):
    """Each call of the timer is one pass of rounds whose fp32 / artifact ratios are the given ones."""
    passes = iter(ratios_per_pass)
    calls_made = []

    def timer(calls):
        calls_made.append(1)
        ratios = next(passes)
        return {FP32: Timed(tuple((r,) for r in ratios)), ARTIFACT: Timed(tuple((1.0,) for _ in ratios))}
    timer.calls = calls_made
    return timer


def test_decide_reads_the_quartiles_of_the_per_round_ratios():
    from dirac_deploy.quantize.speed import ACCEPTED, NOT_GATED, REFUSED, UNDECIDED, decide

    assert decide([1.1, 1.2, 1.3, 1.25, 1.15], 1.0) == ACCEPTED
    assert decide([0.7, 0.8, 0.85, 0.9, 0.75], 1.0) == REFUSED
    assert decide([0.78, 0.87, 1.26, 0.9, 1.1], 1.0) == UNDECIDED  # the spread the bundled model showed
    assert decide([0.5, 0.6, 0.7], 0) == NOT_GATED
    # a median above the bar is not enough: the lower quartile decides acceptance
    assert decide([0.9, 1.05, 1.1, 1.2, 0.95], 1.0) == UNDECIDED


def test_more_rounds_settle_a_noisy_start():
    from dirac_deploy.quantize.speed import ACCEPTED, MAX_ROUNDS, UNDECIDED, measure_speed

    noisy, clean = [0.8, 1.3, 0.9, 1.2, 1.0], [1.4] * 5
    proof = measure_speed(None, None, target="onnxruntime", precision="int8", input_shape=(3, 4, 4),
                          timer=spread_timer([noisy, clean, clean, clean]), make_calls=lambda _x: {})
    row = proof.rows[0]
    assert len(row.rounds) == 10 and row.decision == ACCEPTED  # noisy, then one clean pass tipped it
    stuck = spread_timer([noisy] * (MAX_ROUNDS // 5 + 1))
    proof = measure_speed(None, None, target="onnxruntime", precision="int8", input_shape=(3, 4, 4), timer=stuck,
                          make_calls=lambda _x: {})
    assert proof.rows[0].decision == UNDECIDED and len(proof.rows[0].rounds) == MAX_ROUNDS
    assert proof.decision == UNDECIDED and not proof.ok and len(stuck.calls) == MAX_ROUNDS // 5


def test_undecided_writes_nothing_and_exits_3(tmp_path, monkeypatch):
    from dirac_deploy.quantize import speed

    monkeypatch.setattr(speed, "interleaved_timer",
                        lambda _seconds: spread_timer([[0.8, 1.3, 0.9, 1.2, 1.0]] * 10))
    res = CliRunner().invoke(main, ["quantize", str(DIGITS), "-o", str(tmp_path / "q.onnx"), "--speed-batch", "1"])
    assert res.exit_code == 3, res.output
    assert "undecided: the machine is too noisy" in res.output and "IQR 0.90-1.20 over 20" in res.output
    assert list(tmp_path.iterdir()) == []

"""bench.formats: the numeric formats of the PyTorch backends (fp32, tf32, fp16, bf16, -cl) and their agreement
with fp32. The casting and the agreement measure run on the CPU; timing them is a GPU matter (marker gpu)."""

import pytest
import torch

from dirac_deploy.bench.formats import FORMATS, NumericFormat, agreement, tf32_allowed, uses_tf32
from dirac_deploy.bench.models import calibrate_bn
from dirac_deploy.bench.run import BenchConfig, run_benchmark
from dirac_deploy.errors import DiracDeployError
from dirac_deploy.models.dirac import DiracNet
from dirac_deploy.spec import cifar_spec


def _net():
    torch.manual_seed(0)
    return calibrate_bn(DiracNet(cifar_spec(10, 0.5)), (3, 32, 32))


def test_a_format_casts_a_copy_and_never_the_variant_s_own_model():
    model = _net()
    x = torch.randn(2, 3, 32, 32)
    m, xd = NumericFormat("bf16-cl").apply(model, x)
    assert m is not model and next(model.parameters()).dtype == torch.float32
    assert next(m.parameters()).dtype == torch.bfloat16 and xd.dtype == torch.bfloat16
    assert xd.is_contiguous(memory_format=torch.channels_last) and not xd.is_contiguous()
    same, same_x = NumericFormat("fp32").apply(model, x)
    assert same is model and same_x is x


def test_unknown_formats_are_refused_by_name():
    with pytest.raises(ValueError, match="fp8.*choose from"):
        NumericFormat("fp8")
    assert set(FORMATS) == {"fp32", "tf32", "fp16", "bf16", "fp32-cl", "tf32-cl", "fp16-cl", "bf16-cl"}


def test_tf32_is_allowed_for_the_tf32_format_and_for_fp32_only_on_request():
    assert uses_tf32(NumericFormat("tf32-cl"), False) and not uses_tf32(NumericFormat("fp32"), False)
    assert uses_tf32(NumericFormat("fp32"), True) and not uses_tf32(NumericFormat("bf16"), True)
    before = torch.backends.cudnn.allow_tf32
    with tf32_allowed(not before):
        assert torch.backends.cudnn.allow_tf32 is (not before)
    assert torch.backends.cudnn.allow_tf32 is before


def test_agreement_measures_bf16_against_fp32_and_calls_fp32_exact():
    model, images = _net(), torch.randn(8, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    bf16 = agreement(model, NumericFormat("bf16"), images, "cpu")
    # bf16 keeps 8 significant bits: tens of dB, not exact, and not garbage
    assert bf16["finite"] and 15 < bf16["logit_sqnr_db"] < 60 and bf16["max_abs_diff"] > 0
    assert bf16["images"] == 8 and 0 <= bf16["top1_agreement"] <= 1
    tf32_on_cpu = agreement(model, NumericFormat("tf32"), images, "cpu")  # TF32 is a CUDA mode: exact on the CPU
    assert tf32_on_cpu["logit_sqnr_db"] is None and tf32_on_cpu["max_abs_diff"] == 0


def test_formats_other_than_fp32_need_the_gpu():
    with pytest.raises(DiracDeployError, match="`device='cuda'`.*`precision`"):
        run_benchmark(BenchConfig(device="cpu", formats=("fp16",), batches=(1,)))
    with pytest.raises(DiracDeployError, match="unknown format"):
        run_benchmark(BenchConfig(device="cpu", formats=("half",), batches=(1,)))


@pytest.mark.gpu
def test_every_format_runs_on_a_gpu_with_its_agreement_recorded():
    cfg = BenchConfig(device="cuda", model_path=None, depth=18, batches=(1, 4), backends=("torch", "cuda-graph"),
                      formats=("fp32", "tf32", "fp16", "bf16-cl"), warmup=1, iters=6, max_seconds=0.05, rounds=2)
    result = run_benchmark(cfg)
    ok = [r for r in result.records if r["status"] == "ok"]
    assert {(r["backend"], r["format"]) for r in ok} == {(b, f) for b in cfg.backends for f in cfg.formats}
    agree = result.env["format_agreement"]
    assert set(agree) == {"tf32", "fp16", "bf16-cl"}
    for fmt, floor in (("tf32", 25), ("fp16", 30), ("bf16-cl", 15)):
        for variant, a in agree[fmt].items():
            assert a["finite"] and (a["logit_sqnr_db"] is None or a["logit_sqnr_db"] > floor), (fmt, variant, a)
    doc = result.to_json()
    assert {(r["format"], r["batch"]) for r in doc["best_rows"]} == {(f, b) for f in cfg.formats for b in (1, 4)}

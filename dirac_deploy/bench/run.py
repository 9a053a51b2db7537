"""The benchmark run: every (variant, backend, batch) on one device, in one process, plus the practical peak."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch

from ..checkpoint import LoadOptions
from ..errors import DiracDeployError
from ..export.onnx import DEFAULT_OPSET, to_onnx_proto
from .env import collect_env
from .models import VARIANTS, build_models, peak_conv
from .runners import ALL_BACKENDS, Skip, default_backends, prepare, sync_for
from .timing import PeakRSS, measure

MAX_BENCH_BATCH = 1024  # one timed call at a larger batch would take minutes on a CPU and gigabytes of memory


@dataclass
class BenchConfig:
    model_path: Path | None = None
    depth: int = 18
    device: str = "cpu"
    batches: tuple[int, ...] = (1, 8, 32)
    backends: tuple[str, ...] | None = None
    variants: tuple[str, ...] = VARIANTS
    threads: int | None = None
    warmup: int = 3
    iters: int = 30
    max_seconds: float = 3.0  # per record, once 5 calls were timed
    tf32: bool = False
    options: LoadOptions | None = None


@dataclass
class BenchResult:
    env: dict
    records: list[dict] = field(default_factory=list)

    def to_json(self) -> dict:
        return {"env": self.env, "records": self.records}


def _record(variant, backend, device, batch, status, latency=None, flops=0, peak_gflops=None, mem=None, **extra):
    rec = {"variant": variant, "backend": backend, "device": device, "batch": batch, "status": status,
           "latency_ms": None, "throughput": None, "peak_mem_mb": None, "gflops": None, "peak_fraction": None}
    if latency is not None:
        seconds = latency.p50 / 1e3
        rec.update(latency_ms=latency.to_dict(), throughput=batch / seconds, peak_mem_mb=mem,
                   gflops=flops * batch / seconds / 1e9, iters=latency.count)
        if peak_gflops:
            rec["peak_fraction"] = rec["gflops"] / peak_gflops
    rec.update(extra)
    return rec


def _timed(call, device, cfg: BenchConfig):
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
        lat = measure(call, warmup=cfg.warmup, iters=cfg.iters, max_seconds=cfg.max_seconds, sync=sync_for(device))
        return lat, (torch.cuda.max_memory_allocated() - base) / 2**20
    with PeakRSS() as rss:
        lat = measure(call, warmup=cfg.warmup, iters=cfg.iters, max_seconds=cfg.max_seconds)
    return lat, rss.growth_mb


def _peak(backend, device, cfg, threads) -> tuple[float | None, str]:
    """Achieved GFLOP/s of the probe conv on this backend and thread count (None + reason if unavailable)."""
    conv, shape, batch, flops = peak_conv()
    onnx_model = to_onnx_proto(conv, torch.zeros(1, *shape), opset=DEFAULT_OPSET, optimize=True) if "onnx" in backend or backend == "tensorrt" else None
    try:
        call = prepare(backend, cfg.device, conv, onnx_model, shape, batch, threads)
    except Skip as e:
        return None, str(e)
    lat, _ = _timed(call, device, cfg)
    return flops / (lat.p50 / 1e3) / 1e9, "ok"


def run_benchmark(cfg: BenchConfig, progress: Callable[[str], None] = lambda msg: None) -> BenchResult:
    """Run the whole matrix and return records in the documented JSON schema. Never raises for a backend that
    cannot run; its records say `skipped: <reason>`."""
    device = cfg.device
    if device == "cuda" and not torch.cuda.is_available():
        raise DiracDeployError("--device cuda: no CUDA device is visible to torch here (torch "
                               f"{torch.__version__}, CUDA build: {torch.version.cuda or 'no'}); run on a GPU machine "
                               "or use --device cpu")
    if not cfg.batches or min(cfg.batches) < 1 or max(cfg.batches) > MAX_BENCH_BATCH:
        raise DiracDeployError(f"batch sizes must be in 1..{MAX_BENCH_BATCH}, got {list(cfg.batches)}")
    threads = cfg.threads or os.cpu_count() or 1
    torch.set_num_threads(threads)
    if device == "cuda" and torch.cuda.is_available():
        torch.backends.cuda.matmul.allow_tf32 = cfg.tf32
        torch.backends.cudnn.allow_tf32 = cfg.tf32
    backends = cfg.backends or default_backends(device)
    unknown = [b for b in backends if b not in ALL_BACKENDS]
    if unknown:
        raise DiracDeployError(f"unknown backend(s) {unknown}; choose from {', '.join(ALL_BACKENDS)}")
    progress("building models")
    models = build_models(cfg.model_path, cfg.depth, cfg.options, cfg.variants)
    env = collect_env(device, threads)
    env.update(model=models.description, input_shape=list(models.input_shape), resnet_depth=models.resnet_depth,
               warmup=cfg.warmup, iters=cfg.iters, max_seconds_per_record=cfg.max_seconds, tf32=cfg.tf32,
               peak={})
    result = BenchResult(env)
    for backend in backends:
        progress(f"practical peak on {backend}")
        peak, why = _peak(backend, device, cfg, threads)
        env["peak"][backend] = {"gflops": peak, "status": "ok" if peak else f"skipped: {why}",
                                "probe": "conv3x3 256->256, 56x56, batch 8"}
        for variant in cfg.variants:
            v = models.variants[variant]
            for batch in cfg.batches:
                progress(f"{variant} / {backend} / batch {batch}")
                extra = {"threads": threads, "ort_opt_level": {"onnxruntime": "all", "onnxruntime-noopt": "disabled"}.get(backend)}
                if v.model is None:
                    result.records.append(_record(variant, backend, device, batch, f"skipped: {v.missing}", **extra))
                    continue
                try:
                    call = prepare(backend, device, v.model, v.onnx, models.input_shape, batch, threads)
                    latency, mem = _timed(call, device, cfg)
                except Skip as e:
                    result.records.append(_record(variant, backend, device, batch, f"skipped: {e}", **extra))
                    continue
                result.records.append(_record(variant, backend, device, batch, "ok", latency, v.flops, peak, mem,
                                              **extra))
    return result

"""The benchmark run: every (variant, backend, batch) on one device, in one process, plus the practical peak.

Method (a shared, noisy machine changes speed from second to second): for each (backend, batch), every
variant is prepared first (the prepare time, i.e. export, session creation or compile, is recorded, and
memory is measured there, untimed), then the variants are timed in `rounds` interleaved rounds, each round in
a rotated order. A variant's latency percentiles pool all its timed calls; its ratio to the folded chain is
the median of the per-round ratios, with their interquartile range as the spread. A row is flagged
untrustworthy when that spread is wide, a latency's interquartile spread is wide, or the machine was busy
before the run started (load average).
"""

from __future__ import annotations

import contextlib
import os
import time
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Callable

import torch

from .._optional import install_hint
from ..checkpoint import LoadOptions
from ..errors import DiracDeployError, first_line
from ..timing import PeakRSS, Timed, ratio_stats, time_interleaved
from . import MAX_BENCH_BATCH, ONNX_BACKENDS
from .env import collect_env
from .formats import FORMATS, NumericFormat, agreement, tf32_allowed, uses_tf32
from .models import FOLDED, VARIANTS, build_models, peak_conv
from .runners import ALL_BACKENDS, Skip, default_backends, partly_delegated, prepare, sync_for, unavailable

MAX_SPREAD = 0.25  # a latency's (p75 - p25) / p50 above this: the row is noisy
MAX_RATIO_SPREAD = 0.15  # per-round ratios' IQR / median above this: the row's ratio is not trustworthy
MAX_IDLE_LOAD = 0.5  # 1-minute load average per core before the run above this: the machine was busy


@dataclass
class BenchConfig:
    model_path: Path | None = None
    depth: int = 18
    device: str = "cpu"
    batches: tuple[int, ...] = (1, 8, 32)
    backends: tuple[str, ...] | None = None
    variants: tuple[str, ...] = VARIANTS
    threads: int | None = None
    rounds: int = 5
    warmup: int = 3
    iters: int = 30  # timed calls per variant and row, over all rounds (fewer when max_seconds runs out)
    max_seconds: float = 3.0  # per variant and row
    tf32: bool = False  # plain fp32 rows with TF32 allowed (the `tf32` format always allows it)
    formats: tuple[str, ...] = ("fp32",)  # numeric formats of the PyTorch backends (bench.formats); GPU only
    options: LoadOptions | None = None
    precisions: tuple[str, ...] = ()  # low-precision rows (bench.lowp): any of int8, fp16, bf16, fp32 (OpenVINO)
    calib: str = "auto"  # their calibration / evaluation data (quantize's forms); auto: embedded, else random
    evaluation: str = "auto"


@dataclass
class BenchResult:
    env: dict
    records: list[dict] = field(default_factory=list)

    def to_json(self) -> dict:
        from .report import BENCH_UNITS, best_rows, headline_rows, lowp_rows

        # version 4: `rows[].folded_ms` (was `folded`), `units`, each record's warnings its own; version 3:
        # every ratio is a speed-up, t_other / t_this (> 1: this is faster); version 2's lowp `vs_fp32_ort` ran
        # the other way (docs/reports.md)
        return {"schema": "dirac-deploy/bench", "version": 4, "units": BENCH_UNITS, "env": self.env,
                "records": self.records,
                "rows": [row.to_dict() for row in headline_rows(self.records)],
                "best_rows": [row.to_dict() for row in best_rows(self.records)],
                "lowp_rows": [row.to_dict() for row in lowp_rows(self.records)]}


def _record(variant, backend, device, batch, status, **extra) -> dict:
    rec = {"variant": variant, "backend": backend, "device": device, "batch": batch, "status": status,
           "latency_ms": None, "throughput": None, "peak_mem_mb": None, "gflops": None, "peak_fraction": None}
    rec.update(extra)
    return rec


def _measure_prepare(make: Callable[[], Callable], device: str, warmup: int, sync) -> tuple[Callable, float, float | None]:
    """(call, prepare seconds, memory MB): memory is the growth while preparing and running the warm-up calls,
    sampled here where nothing is timed."""
    if device == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
        t0 = time.perf_counter()
        call = make()
        seconds = time.perf_counter() - t0
        for _ in range(warmup):
            call()
        sync()
        return call, seconds, (torch.cuda.max_memory_allocated() - base) / 2**20
    with PeakRSS() as rss:
        t0 = time.perf_counter()
        call = make()
        seconds = time.perf_counter() - t0
        for _ in range(warmup):
            call()
    return call, seconds, rss.growth_mb


def _timed(calls: dict[str, Callable], cfg: BenchConfig, sync) -> dict[str, Timed]:
    """The one timing of both bench loops (`timing.time_interleaved`) with the run's settings."""
    return time_interleaved(calls, rounds=cfg.rounds, iters=cfg.iters, max_seconds=cfg.max_seconds, sync=sync)


def _peak(backend, device, cfg, threads) -> tuple[float | None, str]:
    """Achieved GFLOP/s of the probe conv on this backend and thread count (None + reason if unavailable)."""
    from .models import Variant

    conv, shape, batch, flops = peak_conv()
    onnx_model = None
    if backend in ONNX_BACKENDS:
        try:
            from ..export import DEFAULT_OPSET
            from ..export.onnx import to_onnx_proto

            onnx_model = to_onnx_proto(conv, torch.zeros(1, *shape), opset=DEFAULT_OPSET, optimize=True)
        except DiracDeployError as e:
            return None, str(e)
    probe = Variant("probe", conv, onnx_model)
    sync = sync_for(device)
    try:
        call, _, _ = _measure_prepare(lambda: prepare(backend, device, probe, shape, batch, threads), device, 1, sync)
    except Skip as e:
        return None, str(e)
    timed = time_interleaved({"probe": call}, rounds=1, iters=5, max_seconds=cfg.max_seconds, sync=sync)
    return flops / (timed["probe"].round_p50_ms[0] / 1e3) / 1e9, "ok"


def _warnings(recs: dict[str, dict], env: dict, where: str, hub: str) -> dict[str, list[str]]:
    """Per record, the warnings that concern it: the machine's load, its own latency spread and ratio spread,
    and those of `hub`, the record every ratio is taken against (the folded chain, or fp32 ORT), which gets all."""
    machine = []
    load = env.get("load_average")
    if load and env.get("cores") and load[0] / env["cores"] > MAX_IDLE_LOAD:
        machine.append(f"machine busy before the run (load {load[0]:.2f} on {env['cores']} cores)")
    own: dict[str, list[str]] = {}
    for name, rec in recs.items():
        out = own.setdefault(name, [])
        lat = rec.get("latency_ms")
        if lat and lat["spread"] > MAX_SPREAD:
            out.append(f"{where}: {name} latency spread (p75-p25)/p50 = {lat['spread']:.2f}")
        ratio = rec.get("vs_folded")
        if ratio and ratio["median"] > 0 and (ratio["iqr"][1] - ratio["iqr"][0]) / ratio["median"] > MAX_RATIO_SPREAD:
            out.append(f"{where}: {name} / {hub} per-round ratios {ratio['iqr'][0]:.2f}-{ratio['iqr'][1]:.2f}")
    everything = [w for ws in own.values() for w in ws]
    return {name: machine + (everything if name == hub else own.get(hub, []) + own[name]) for name in recs}


def _lowp_runs(cfg: BenchConfig, models) -> bool:
    from .._optional import available

    folded = models.variants.get(FOLDED)
    return bool(cfg.precisions) and cfg.device == "cpu" and folded is not None and folded.onnx is not None \
        and available("onnxruntime")


def _formats_for(backend: str, cfg: BenchConfig) -> list[NumericFormat]:
    """The formats `backend` runs: all of them on PyTorch backends, fp32 only on ONNX ones."""
    fmts = [NumericFormat(f) for f in cfg.formats]
    return fmts if backend not in ONNX_BACKENDS else [f for f in fmts if f.is_reference][:1]


def _format_agreement(models, cfg: BenchConfig) -> dict:
    """Per non-fp32 format and PyTorch variant, its logits against strict fp32 on 16 seeded images."""
    images = torch.randn(16, *models.input_shape, generator=torch.Generator().manual_seed(1234))
    out: dict[str, dict] = {}
    for name in cfg.formats:
        fmt = NumericFormat(name)
        if fmt.is_reference:
            continue
        out[name] = {v.name: agreement(v.model, fmt, images, cfg.device) for v in models.variants.values()
                     if v.model is not None}
    return out


def bench_steps(cfg: BenchConfig, backends, models) -> list[str]:
    """Every step `run_benchmark` reports, by name and in order, announced before the first: "building
    models", then per backend its practical peak and, per format and batch, each variant's prepare and the
    interleaved timing; then the low-precision builds and their per-batch prepares and timing."""
    from .lowp import REFERENCE, rows_for

    steps = ["building models"]
    for backend in backends:
        steps.append(f"practical peak on {backend}")
        if unavailable(backend, cfg.device):
            continue
        for fmt in _formats_for(backend, cfg):
            where = _where(backend, fmt)
            for batch in cfg.batches:
                steps += [f"{name} / {where} / batch {batch}: prepare" for name in models.variants]
                steps.append(_timing_step(where, batch, cfg))
    if _lowp_runs(cfg, models):
        names = [name for name, *_ in rows_for(cfg.precisions)]
        steps += [f"{name}: build and prove" for name in names]
        for batch in cfg.batches:
            steps += [f"{name} / batch {batch}: prepare" for name in (REFERENCE, *names)]
            steps.append(_timing_step("low precision", batch, cfg))
    return steps


def _where(backend: str, fmt: NumericFormat) -> str:
    return backend if fmt.is_reference else f"{backend} {fmt.name}"


def _timing_step(where: str, batch: int, cfg: BenchConfig) -> str:
    return f"{where} / batch {batch}: timing, {cfg.rounds} interleaved rounds"


def run_benchmark(cfg: BenchConfig, progress: Callable[[str], None] = lambda _msg: None,
                  on_plan: Callable[[list[str]], None] = lambda _steps: None) -> BenchResult:
    """Run the whole matrix and return records in the documented JSON schema. Never raises for a backend that
    cannot run; its records say `skipped: <reason>`.

    Raises:
        DiracDeployError: --device cuda without CUDA, a batch size or backend out of range, an unreadable MODEL.
    """
    device = cfg.device
    if device == "cuda" and not torch.cuda.is_available():
        raise DiracDeployError("`device='cuda'`: no CUDA device is visible to torch here (torch "
                               f"{torch.__version__}, CUDA build: {torch.version.cuda or 'no'}); run on a GPU machine "
                               "or use `device='cpu'`")
    if not cfg.batches or min(cfg.batches) < 1 or max(cfg.batches) > MAX_BENCH_BATCH:
        raise DiracDeployError(f"batch sizes must be in 1..{MAX_BENCH_BATCH}, got {list(cfg.batches)}")
    if cfg.rounds < 1:
        raise DiracDeployError(f"rounds must be at least 1, got {cfg.rounds}")
    bad = [f for f in cfg.formats if f not in FORMATS]
    if bad or not cfg.formats:
        raise DiracDeployError(f"unknown format(s) {bad or '(none)'}; choose from {', '.join(FORMATS)}")
    if device != "cuda" and tuple(cfg.formats) != ("fp32",):
        raise DiracDeployError(f"formats {', '.join(cfg.formats)} are for `device='cuda'` (PyTorch on a GPU); on the "
                               "CPU, low precision is `precision` (int8/fp16/bf16 artifacts on ONNX Runtime and "
                               "OpenVINO)")
    threads = cfg.threads or os.cpu_count() or 1
    env_before = collect_env(device, threads)  # the load average before this process adds its own
    torch.set_num_threads(threads)
    if device == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = cfg.tf32
        torch.backends.cudnn.allow_tf32 = cfg.tf32
    backends = cfg.backends or default_backends(device)
    unknown = [b for b in backends if b not in ALL_BACKENDS]
    if unknown:
        raise DiracDeployError(f"unknown backend(s) {unknown}; choose from {', '.join(ALL_BACKENDS)}")
    from .._optional import available

    wants_onnx = any(b in ONNX_BACKENDS and not unavailable(b, device) for b in backends) and available("onnxruntime")
    progress("building models")
    models = build_models(cfg.model_path, cfg.depth, cfg.options, cfg.variants, onnx=wants_onnx)
    env = env_before
    env.update(model=models.description, input_shape=list(models.input_shape), baseline=models.baseline,
               rounds=cfg.rounds, warmup=cfg.warmup, iters=cfg.iters, max_seconds_per_variant=cfg.max_seconds,
               tf32=cfg.tf32, formats=list(cfg.formats), peak={},
               variants={n: {"description": v.description, "params": v.params, "flops": v.flops,
                             "export_s": v.export_s, "missing": v.missing or None}
                         for n, v in models.variants.items()},
               thresholds={"max_spread": MAX_SPREAD, "max_ratio_spread": MAX_RATIO_SPREAD, "max_idle_load": MAX_IDLE_LOAD})
    on_plan(bench_steps(cfg, backends, models))  # the first step, 'building models', is done
    result = BenchResult(env)
    if any(f != "fp32" for f in cfg.formats):
        env["format_agreement"] = _format_agreement(models, cfg)
    for backend in backends:
        progress(f"practical peak on {backend}")
        why_not = unavailable(backend, device)
        if why_not:
            env["peak"][backend] = {"gflops": None, "status": f"skipped: {why_not}"}
            result.records.extend(_record(name, backend, device, batch, f"skipped: {why_not}", threads=threads)
                                  for batch in cfg.batches for name in models.variants)
            continue
        peak, why = _peak(backend, device, cfg, threads)
        env["peak"][backend] = {"gflops": peak, "status": "ok" if peak else f"skipped: {why}",
                                "probe": "conv3x3 256->256, 56x56, batch 8"}
        for fmt in _formats_for(backend, cfg):
            with tf32_allowed(uses_tf32(fmt, cfg.tf32)) if device == "cuda" else contextlib.nullcontext():
                for batch in cfg.batches:
                    result.records.extend(_time_group(cfg, models, backend, fmt, batch, threads, peak, env,
                                                      progress))
    if cfg.precisions:
        _run_lowp(cfg, models, threads, env, result, progress)
    return result


def _time_group(cfg: BenchConfig, models, backend: str, fmt: NumericFormat, batch: int, threads: int,
                peak: float | None, env: dict, progress) -> list[dict]:
    """Every variant on one (backend, format, batch): prepared, then timed in interleaved rounds."""
    device, sync = cfg.device, sync_for(cfg.device)
    extra = {"threads": threads, "format": fmt.name}
    where = _where(backend, fmt)
    calls, recs = {}, {}
    for name, v in models.variants.items():
        progress(f"{name} / {where} / batch {batch}: prepare")
        try:
            call, seconds, mem = _measure_prepare(
                partial(prepare, backend, device, v, models.input_shape, batch, threads, fmt), device,
                cfg.warmup, sync)
        except Skip as e:
            recs[name] = _record(name, backend, device, batch, f"skipped: {e}", **extra)
            continue
        except (RuntimeError, torch.cuda.OutOfMemoryError) as e:  # a CUDA failure of one row, not of the run
            if device != "cuda":
                raise
            recs[name] = _record(name, backend, device, batch, f"failed: {first_line(e)[:300]}", **extra)
            continue
        calls[name] = call
        recs[name] = _record(name, backend, device, batch, "ok", peak_mem_mb=mem, prepare_s=seconds,
                             export_s=v.export_s if backend in ONNX_BACKENDS else None, **extra)
        delegation = getattr(call, "delegation", None)
        if delegation is not None:  # a lowered program: what XNNPACK runs of it
            recs[name]["delegation"] = delegation
    progress(_timing_step(where, batch, cfg))
    if calls:
        timed = _timed(calls, cfg, sync)
        for name, t in timed.items():
            v, rec = models.variants[name], recs[name]
            rec.update(t.fields(batch))
            rec["gflops"] = v.flops * batch / (rec["latency_ms"]["p50"] / 1e3) / 1e9
            if peak:
                rec["peak_fraction"] = rec["gflops"] / peak
            if FOLDED in timed and name != FOLDED:
                rec["vs_folded"] = ratio_stats(t, timed[FOLDED])
        warnings = _warnings(recs, env, f"{where} batch {batch}", FOLDED)
        for name, rec in recs.items():
            if rec["status"] == "ok":
                rec["warnings"] = warnings[name] + partly_delegated(rec, f"{where} batch {batch}: {name}")
    calls.clear()
    return list(recs.values())


def _lowp_data(cfg: BenchConfig, models, role: str):
    from ..errors import OptionError
    from ..quantize.data import load_data

    spec = cfg.calib if role == "calib" else cfg.evaluation
    prov = models.provenance
    kw = dict(mean=None if prov.mean is None else list(prov.mean), std=None if prov.std is None else list(prov.std),
              role=role, source_sha256=prov.source_sha256)
    if spec == "auto":
        try:
            return load_data("embedded", models.input_shape, **kw)
        except OptionError:
            spec = "random:32" if role == "calib" else "random:64"
    return load_data(spec, models.input_shape, limit=256 if role == "calib" else None, **kw)


def _run_lowp(cfg: BenchConfig, models, threads: int, env: dict, result: BenchResult, progress) -> None:
    """The low-precision rows (see `bench.lowp`): every artifact and the fp32 ORT reference, interleaved."""
    from .lowp import REFERENCE, build_artifacts, prepare_call

    folded = models.variants.get(FOLDED)
    if not _lowp_runs(cfg, models):
        why = ("low-precision rows run on the CPU" if cfg.device != "cpu" else
               f"needs ONNX Runtime and the folded chain's ONNX graph ({install_hint('onnxruntime')})")
        env["lowp"] = {"status": f"skipped: {why}"}
        return
    calib, evaluation = _lowp_data(cfg, models, "calib"), _lowp_data(cfg, models, "eval")
    arts = build_artifacts(folded.onnx, calib, evaluation, cfg.precisions, progress, chain=folded.model)
    env["lowp"] = {"status": "ok", "calibration": calib.source, "evaluation": evaluation.source,
                   "reference": "the folded chain's audited ONNX, ONNX Runtime fp32 with its default optimizations",
                   "artifacts": {a.name: {"precision": a.precision, "method": a.method, "runtime": a.target,
                                          "build_s": a.build_s, "quality": a.quality, "missing": a.missing or None}
                                 for a in arts}}
    sync = sync_for("cpu")
    for batch in cfg.batches:
        x = torch.randn(batch, *models.input_shape, generator=torch.Generator().manual_seed(batch)).numpy()
        calls, recs = {}, {}
        for name, art in [(REFERENCE, None), *[(a.name, a) for a in arts]]:
            base = dict(lowp=True, lowp_name=name, precision=art.precision if art else "fp32",
                        method=art.method if art else "none", quality=art.quality if art else None, threads=threads)
            variant = FOLDED if art is None else f"{FOLDED}-{art.precision}-{art.method}"
            backend = "onnxruntime" if art is None else art.target
            progress(f"{name} / batch {batch}: prepare")
            if art is not None and art.missing:
                recs[name] = _record(variant, backend, "cpu", batch, f"skipped: {art.missing}", **base)
                continue
            call, seconds, mem = _measure_prepare(partial(prepare_call, art, folded.onnx, x, threads), "cpu",
                                                  cfg.warmup, sync)
            calls[name] = call
            recs[name] = _record(variant, backend, "cpu", batch, "ok", peak_mem_mb=mem, prepare_s=seconds, **base)
        progress(_timing_step("low precision", batch, cfg))
        timed = _timed(calls, cfg, sync)
        for name, t in timed.items():
            recs[name].update(t.fields(batch))
            if name != REFERENCE:  # the same direction as vs_folded: > 1 means the artifact is faster
                recs[name]["speedup_vs_fp32_ort"] = ratio_stats(timed[REFERENCE], t)
        warnings = _warnings({n: {**r, "vs_folded": r.get("speedup_vs_fp32_ort")} for n, r in recs.items()}, env,
                             f"low precision batch {batch}", REFERENCE)
        for name, rec in recs.items():
            if rec["status"] == "ok":
                rec["warnings"] = warnings[name]
        result.records.extend(recs.values())

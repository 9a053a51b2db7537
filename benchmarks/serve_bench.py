"""Serving overhead: tritonclient against in-process ONNX Runtime, same model, same layout, same run.

    .venv/bin/python benchmarks/serve_bench.py            # ~4 min on a 2-core VM; writes results/serve-cpu.json
    .venv/bin/python benchmarks/serve_bench.py --case int8   # ~2 min; writes results/serve-int8-cpu.json
    .venv/bin/python benchmarks/serve_bench.py --case ray    # ~2 min, needs ray[serve]; results/serve-ray-cpu.json
    .venv/bin/python benchmarks/serve_bench.py --case ray-batch  # ~3 min, needs ray[serve]; serve-ray-batch-cpu.json

Model: ImageNet DiracNet-18 (random weights, calibrated BN), folded and exported with `export_onnx`, 224x224,
batch 1 per request. Three server layouts, each compared with the same layout in-process (`load_served_model`
in this process: the same sessions, threads and batching; only HTTP is missing):
- latency: 1 instance x all cores (the `serve` default);
- throughput: one instance per core, 1 thread each (`--instances N --threads 1`);
- batched: 1 instance x all cores with dynamic batching (`--max-batch 8`).
Measured: (1) p50 of sequential calls through tritonclient binary HTTP (and gRPC) vs in-process calls;
(2) throughput with 8 concurrent clients vs 8 concurrent in-process callers; (3) the stack's fixed cost per
request, on the embedded digits model (about 0.2 ms of compute); (4) the floor: `floor_server.py`, a bare
asyncio responder that waits the in-process p50 (and one that waits nothing) and returns a canned answer,
through the same tritonclient calls. Shared machines drift, so the cases alternate in rounds and each ratio is the median of per-round
ratios. Clients and servers share the machine.

The int8 case (`--case int8`): the same DiracNet-18 quantized by `quantize_file` to the identity-aware int8
OpenVINO IR (random calibration images) and written as the fp32 IR, both served with `--runtime openvino` in
the same layout (1 instance x all cores) and called in-process: p50 and 8-client throughput, int8 against fp32.

The Ray batching case (`--case ray-batch`): Ray Serve, one replica per core (1 thread each), redeployed in
turn with no batching, our dynamic batching (`--max-batch`, no wait) and Ray's `@serve.batch` (same max
images; Ray's default 10 ms wait, and no wait): p50 of sequential calls and throughput with `--clients`.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import tritonclient.grpc as tgrpc
import tritonclient.http as thttp

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from dirac_deploy.bench.env import collect_env
from dirac_deploy.bench.models import calibrate_bn
from dirac_deploy.bench.report import write_json
from dirac_deploy.data import embedded_checkpoint
from dirac_deploy.export.from_file import export_file
from dirac_deploy.export.onnx import export_onnx
from dirac_deploy.folding.fold import fold
from dirac_deploy.models.dirac import DiracNet
from dirac_deploy.serve.model import ModelSource
from dirac_deploy.serve_files import load_served_model
from dirac_deploy.spec import imagenet_spec

from serving import free_port, running_server

RESULTS = Path(__file__).resolve().parent / "results"


def diracnet18_onnx(path: Path) -> Path:
    """The model every case serves: ImageNet DiracNet-18 (random weights, calibrated BN), folded, as ONNX."""
    export_onnx(fold(calibrate_bn(DiracNet(imagenet_spec(18)), (3, 224, 224))).plain, path, input_shape=(3, 224, 224))
    return path


def http_round(seq: dict, tput: dict, key: str, address: str, model: str, x: np.ndarray, args) -> None:
    """One round against a server: the p50 of `args.calls` sequential calls into seq[key], then the calls per
    second of `args.clients` concurrent clients for `args.seconds` into tput[key]."""
    seq[key].append(p50_ms(http_call(address, model, x), args.calls))
    tput[key].append(throughput(lambda: http_call(address, model, x), args.clients, args.seconds))


def median_ratio(a: list[float], b: list[float]) -> float:
    """The median of per-round ratios a/b (rounds alternate, so each ratio compares like with like)."""
    return statistics.median([x / y for x, y in zip(a, b)])


def ray_options(cores: int, **kw):
    """The Ray layout every Ray case uses: one replica per core, 1 CPU and 1 thread each, 8 requests ongoing."""
    from dirac_deploy.serve_ray import RayOptions

    return RayOptions(replicas=cores, cpus_per_replica=1, threads=1, num_cpus=cores, max_ongoing_requests=8, **kw)


def p50_ms(call, n: int, warmup: int = 3) -> float:
    for _ in range(warmup):
        call()
    samples = []
    for _ in range(n):
        t0 = time.perf_counter()
        call()
        samples.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(samples)


def throughput(make_call, clients: int, seconds: float) -> float:
    """Calls per second completed by `clients` threads over `seconds`. Each thread makes its own call (a
    tritonclient is bound to the thread that made it), warms it up, then all start together."""
    done, ready = [0] * clients, threading.Barrier(clients + 1)
    stop = [0.0]

    def worker(i):
        call = make_call()
        call()  # connect and warm up outside the timed window
        ready.wait()
        while time.monotonic() < stop[0]:
            call()
            done[i] += 1

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(clients)]
    for t in threads:
        t.start()
    stop[0] = time.monotonic() + 3600  # set for real once everyone is ready
    ready.wait()
    t0 = time.monotonic()
    stop[0] = t0 + seconds
    for t in threads:
        t.join()
    return sum(done) / (time.monotonic() - t0)


def http_call(host: str, model: str, x: np.ndarray):
    client = thttp.InferenceServerClient(host, network_timeout=60)
    inp = thttp.InferInput("input", list(x.shape), "FP32")
    inp.set_data_from_numpy(x)  # binary, tritonclient's default
    return lambda: client.infer(model, [inp]).as_numpy("logits")


def grpc_call(address: str, model: str, x: np.ndarray):
    client = tgrpc.InferenceServerClient(address)
    inp = tgrpc.InferInput("input", list(x.shape), "FP32")
    inp.set_data_from_numpy(x)
    return lambda: client.infer(model, [inp]).as_numpy("logits")


@contextlib.contextmanager
def floor_server(delay_ms: float):
    """Run floor_server.py on a free loopback port; yield its host:port."""
    port = free_port()
    proc = subprocess.Popen([sys.executable, str(Path(__file__).with_name("floor_server.py")), str(port), str(delay_ms)])
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise RuntimeError("floor server did not start") from None
                time.sleep(0.1)
        yield f"127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(timeout=10)


async def _in_process_tasks(model, x: np.ndarray, clients: int, seconds: float) -> float:
    done = [0]

    async def client():
        while time.monotonic() < stop:
            await model.infer_async(x)
            done[0] += 1

    await asyncio.gather(*(model.infer_async(x) for _ in range(clients)))  # warm up every instance
    stop = time.monotonic() + seconds
    t0 = time.monotonic()
    await asyncio.gather(*(client() for _ in range(clients)))
    return done[0] / (time.monotonic() - t0)


def in_process_throughput(model, x: np.ndarray, clients: int, seconds: float) -> float:
    """Calls per second from `clients` concurrent callers of `model.infer_async` in this process: what the
    server does per request minus HTTP (same instances, same batching)."""
    return asyncio.run(_in_process_tasks(model, x, clients, seconds))


def ray_case(args, cores: int) -> None:
    """Ray Serve with `cores` replicas (1 CPU, 1 thread each) against our server with --instances `cores`
    --threads 1 and the same ServedModel in-process, DiracNet-18, batch 1: p50 and 8-client throughput."""
    from dirac_deploy.serve_ray import start_ray, stop_ray

    x = np.random.default_rng(0).standard_normal((1, 3, 224, 224)).astype(np.float32)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "diracnet18.onnx"
        diracnet18_onnx(path)
        local = load_served_model(ModelSource("diracnet18", path), threads=1, instances=cores)
        t0 = time.perf_counter()
        ray_url = start_ray([str(path)], port=free_port(), options=ray_options(cores))
        ray_start_s = time.perf_counter() - t0
        try:
            with running_server(str(path), "--instances", str(cores), "--threads", "1") as (url, _):
                urls = {"builtin": url.removeprefix("http://"), "ray": ray_url.removeprefix("http://")}
                seq = {k: [] for k in ("in_process", *urls)}
                tput = {k: [] for k in ("in_process", *urls)}
                for r in range(args.rounds):
                    print(f"round {r + 1}/{args.rounds} ...", file=sys.stderr)
                    seq["in_process"].append(p50_ms(lambda: local.infer(x), args.calls))
                    tput["in_process"].append(in_process_throughput(local, x, args.clients, args.seconds))
                    for k, u in urls.items():
                        http_round(seq, tput, k, u, "diracnet18", x, args)
        finally:
            stop_ray()
    med = statistics.median
    ratio = {k: median_ratio(seq[k], seq["in_process"]) - 1 for k in ("builtin", "ray")}
    result = {
        "env": collect_env("cpu", cores),
        "model": "DiracNet-18 (ImageNet, random weights, calibrated BN), folded ONNX, batch 1, 224x224",
        "method": f"{args.rounds} alternating rounds; sequential p50 over {args.calls} calls (tritonclient binary "
                  f"HTTP); throughput over {args.seconds} s with {args.clients} clients; Ray Serve "
                  f"{cores} replicas x 1 CPU x 1 thread on a local cluster (ray.init(num_cpus={cores})) vs "
                  f"serve --instances {cores} --threads 1 vs the same ServedModel in-process; clients, servers "
                  f"and Ray share the machine",
        "ray_start_s": ray_start_s,
        "sequential_p50_ms_per_round": seq, "throughput_per_s_per_round": tput,
        "p50_ms": {k: med(v) for k, v in seq.items()},
        "p50_overhead_fraction_vs_in_process": ratio,
        "throughput_per_s": {k: med(v) for k, v in tput.items()},
        "ray_vs_builtin_throughput": median_ratio(tput["ray"], tput["builtin"]),
    }
    out = args.out if args.out != RESULTS / "serve-cpu.json" else RESULTS / "serve-ray-cpu.json"
    write_json(out, result)
    p, t = result["p50_ms"], result["throughput_per_s"]
    print(f"p50: in-process {p['in_process']:.2f} ms, builtin {p['builtin']:.2f} ms (+{100 * ratio['builtin']:.0f}%), "
          f"Ray Serve {p['ray']:.2f} ms (+{100 * ratio['ray']:.0f}%); {args.clients} clients: builtin "
          f"{t['builtin']:.1f}/s, Ray {t['ray']:.1f}/s ({result['ray_vs_builtin_throughput']:.2f}x), in-process "
          f"{t['in_process']:.1f}/s; Ray started in {ray_start_s:.1f} s")
    print(f"wrote {out}")


def ray_batch_case(args, cores: int) -> None:
    """Batching inside Ray Serve replicas: none vs ours vs `@serve.batch` (module docstring), interleaved."""
    from dirac_deploy.serve_ray import start_ray, stop_ray

    variants = {"none": {"max_batch": 1}, "ours": {"max_batch": args.max_batch, "batching": "ours"},
                "ray_wait_10ms": {"max_batch": args.max_batch, "batching": "ray", "batch_wait_s": 0.01},
                "ray_no_wait": {"max_batch": args.max_batch, "batching": "ray", "batch_wait_s": 0.0}}
    x = np.random.default_rng(0).standard_normal((1, 3, 224, 224)).astype(np.float32)
    seq: dict[str, list[float]] = {k: [] for k in variants}
    tput: dict[str, list[float]] = {k: [] for k in variants}
    port = free_port()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "diracnet18.onnx"
        diracnet18_onnx(path)
        try:
            for r in range(args.rounds):
                for k, v in variants.items():
                    print(f"round {r + 1}/{args.rounds}: {k} ...", file=sys.stderr)
                    url = start_ray([str(path)], port=port, options=ray_options(cores, **v))
                    http_round(seq, tput, k, url.removeprefix("http://"), "diracnet18", x, args)
        finally:
            stop_ray()
    med = statistics.median
    result = {
        "env": collect_env("cpu", cores),
        "model": "DiracNet-18 (ImageNet, random weights, calibrated BN), folded ONNX, batch 1, 224x224",
        "method": f"{args.rounds} rounds, the variants redeployed in turn each round; sequential p50 over "
                  f"{args.calls} calls (tritonclient binary HTTP); throughput over {args.seconds} s with "
                  f"{args.clients} clients; Ray Serve {cores} replicas x 1 CPU x 1 thread, max_ongoing_requests 8, "
                  f"max batch {args.max_batch} images; clients and Ray share the machine",
        "variants": variants,
        "sequential_p50_ms_per_round": seq, "throughput_per_s_per_round": tput,
        "p50_ms": {k: med(v) for k, v in seq.items()},
        "throughput_per_s": {k: med(v) for k, v in tput.items()},
        "throughput_vs_none": {k: median_ratio(tput[k], tput["none"]) for k in variants},
        "throughput_vs_ours": {k: median_ratio(tput[k], tput["ours"]) for k in variants},
    }
    out = args.out if args.out != RESULTS / "serve-cpu.json" else RESULTS / "serve-ray-batch-cpu.json"
    write_json(out, result)
    for k in variants:
        print(f"{k:>14}: p50 {result['p50_ms'][k]:.2f} ms, {args.clients} clients {result['throughput_per_s'][k]:.1f}/s "
              f"({result['throughput_vs_none'][k]:.2f}x none, {result['throughput_vs_ours'][k]:.2f}x ours)")
    print(f"wrote {out}")


def int8_case(args, cores: int) -> None:
    """Served int8 IR against the served fp32 IR, same runtime and layout (module docstring)."""
    from dirac_deploy.quantize.run import quantize_file

    x = np.random.default_rng(0).standard_normal((1, 3, 224, 224)).astype(np.float32)
    with tempfile.TemporaryDirectory() as tmp:
        onnx_path = Path(tmp) / "diracnet18.onnx"
        diracnet18_onnx(onnx_path)
        irs = {"fp32": Path(tmp) / "fp32.xml", "int8": Path(tmp) / "int8.xml"}
        proofs = {}
        for precision, xml in irs.items():
            print(f"quantize {precision} ...", file=sys.stderr)
            report = quantize_file(onnx_path, xml, precision=precision, calib="random:32", min_agreement=0,
                                   max_accuracy_drop=100, min_sqnr_db=None, min_speedup=0)
            proofs[precision] = report.to_json()["proof"]
        local = {k: load_served_model(ModelSource(k, xml), "openvino", threads=cores) for k, xml in irs.items()}
        with contextlib.ExitStack() as servers:
            urls = {k: servers.enter_context(running_server(f"{k}={xml}", "--runtime", "openvino", "--threads",
                                                            str(cores)))[0].removeprefix("http://")
                    for k, xml in irs.items()}
            seq = {f"{where}_{k}": [] for k in irs for where in ("in_process", "http")}
            tput = {f"{where}_{k}": [] for k in irs for where in ("in_process", "http")}
            for r in range(args.rounds):
                print(f"round {r + 1}/{args.rounds} ...", file=sys.stderr)
                for k in irs:
                    seq[f"in_process_{k}"].append(p50_ms(lambda k=k: local[k].infer(x), args.calls))
                    tput[f"in_process_{k}"].append(in_process_throughput(local[k], x, args.clients, args.seconds))
                    http_round(seq, tput, f"http_{k}", urls[k], k, x, args)
    med = statistics.median
    result = {
        "env": collect_env("cpu", cores),
        "model": "DiracNet-18 (ImageNet, random weights, calibrated BN), folded, batch 1, 224x224; OpenVINO IRs "
                 "from quantize (identity int8, random:32 calibration; fp32)",
        "method": f"{args.rounds} alternating rounds; sequential p50 over {args.calls} calls; throughput over "
                  f"{args.seconds} s with {args.clients} clients; serve --runtime openvino --threads {cores} "
                  f"(1 instance); ratios are medians of per-round ratios",
        "proofs": {k: {"agreement": p["agreement"], "logit_sqnr_db": p["logit_sqnr_db"],
                       "runtime_ops": p.get("runtime_ops"), "speed": p.get("speed")} for k, p in proofs.items()},
        "sequential_p50_ms_per_round": seq, "throughput_per_s_per_round": tput,
        "p50_ms": {k: med(v) for k, v in seq.items()},
        "throughput_per_s": {k: med(v) for k, v in tput.items()},
        "int8_vs_fp32_throughput": {where: median_ratio(tput[f"{where}_int8"], tput[f"{where}_fp32"])
                                    for where in ("in_process", "http")},
    }
    out = args.out if args.out != RESULTS / "serve-cpu.json" else RESULTS / "serve-int8-cpu.json"
    write_json(out, result)
    r = result
    print(f"served int8 IR: p50 {r['p50_ms']['http_int8']:.2f} ms vs fp32 {r['p50_ms']['http_fp32']:.2f} ms; "
          f"{args.clients} clients {r['throughput_per_s']['http_int8']:.1f}/s vs {r['throughput_per_s']['http_fp32']:.1f}/s "
          f"({r['int8_vs_fp32_throughput']['http']:.2f}x; in-process {r['int8_vs_fp32_throughput']['in_process']:.2f}x)")
    print(f"wrote {out}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--case", choices=("layouts", "int8", "ray", "ray-batch"), default="layouts",
                    help="layouts: the serving overhead of each layout; int8: served int8 IR vs fp32 IR; ray: Ray "
                         "Serve vs our server vs in-process; ray-batch: batching inside Ray replicas")
    ap.add_argument("--rounds", type=int, default=5, help="alternating rounds of every case")
    ap.add_argument("--calls", type=int, default=40, help="sequential calls per case and round")
    ap.add_argument("--seconds", type=float, default=4.0, help="length of each throughput case per round")
    ap.add_argument("--clients", type=int, default=8)
    ap.add_argument("--max-batch", type=int, default=8, help="max batch of the batched layout")
    ap.add_argument("--out", type=Path, default=RESULTS / "serve-cpu.json")
    args = ap.parse_args()
    cores = len(os.sched_getaffinity(0))
    if args.case != "layouts":
        {"int8": int8_case, "ray": ray_case, "ray-batch": ray_batch_case}[args.case](args, cores)
        return
    # name: (instances, threads per instance, max batch)
    layouts = {"latency": (1, cores, 1), "throughput": (cores, 1, 1), "batched": (1, cores, args.max_batch)}

    x = np.random.default_rng(0).standard_normal((1, 3, 224, 224)).astype(np.float32)
    xd = np.random.default_rng(1).standard_normal((1, 3, 32, 32)).astype(np.float32)
    with tempfile.TemporaryDirectory() as tmp:
        path, digits = Path(tmp) / "diracnet18.onnx", Path(tmp) / "digits.onnx"
        diracnet18_onnx(path)
        export_file(embedded_checkpoint(), digits)
        local = {k: load_served_model(ModelSource("diracnet18", path), threads=t, instances=n, max_batch=b)
                 for k, (n, t, b) in layouts.items()}
        local_digits = load_served_model(ModelSource("digits", digits), threads=cores)
        delay_ms = p50_ms(lambda: local["latency"].infer(x), args.calls)  # what the floor server waits per call
        gport = free_port()
        with contextlib.ExitStack() as servers:
            floor_host = servers.enter_context(floor_server(delay_ms))
            floor_now_host = servers.enter_context(floor_server(0.0))
            urls = {}
            for name, (n, t, b) in layouts.items():
                extra = [str(digits), "--grpc-port", str(gport)] if name == "latency" else []
                url, _ = servers.enter_context(running_server(str(path), *extra, "--instances", str(n),
                                                              "--threads", str(t), "--max-batch", str(b)))
                urls[name] = url.removeprefix("http://")
            seq_cases = {
                "in_process": lambda: local["latency"].infer(x),
                **{f"http_{name}": http_call(url, "diracnet18", x) for name, url in urls.items()},
                "grpc_latency": grpc_call(f"127.0.0.1:{gport}", "diracnet18", x),
                "digits_in_process": lambda: local_digits.infer(xd),
                "digits_http": http_call(urls["latency"], "digits", xd),
                "floor_http": http_call(floor_host, "floor", x),
                "floor_immediate_http": http_call(floor_now_host, "floor", x),
            }
            seq = {k: [] for k in seq_cases}
            tput = {f"{where}_{name}": [] for name in layouts for where in ("in_process", "http")}
            for r in range(args.rounds):
                print(f"round {r + 1}/{args.rounds}: sequential ...", file=sys.stderr)
                for k, call in seq_cases.items():
                    seq[k].append(p50_ms(call, args.calls))
                print(f"round {r + 1}/{args.rounds}: {args.clients} concurrent clients ...", file=sys.stderr)
                for name in layouts:
                    tput[f"in_process_{name}"].append(in_process_throughput(local[name], x, args.clients, args.seconds))
                    tput[f"http_{name}"].append(
                        throughput(lambda u=urls[name]: http_call(u, "diracnet18", x), args.clients, args.seconds))

    def ratios(a, b):
        return [x / y for x, y in zip(a, b)]

    med = statistics.median
    best_in_process = max(med(tput[f"in_process_{name}"]) for name in layouts)
    result = {
        "env": collect_env("cpu", cores),
        "model": "DiracNet-18 (ImageNet, random weights, calibrated BN), folded ONNX, batch 1, 224x224",
        "method": f"{args.rounds} alternating rounds; sequential p50 over {args.calls} calls per case and round; "
                  f"throughput over {args.seconds} s with {args.clients} clients (threads, one tritonclient each), "
                  f"in-process with {args.clients} concurrent callers of the same ServedModel (same instances and "
                  f"batching, no HTTP); ratios are medians of per-round ratios",
        "layouts": {k: {"instances": n, "threads": t, "max_batch": b} for k, (n, t, b) in layouts.items()},
        "sequential_p50_ms_per_round": seq,
        "throughput_per_s_per_round": tput,
        "latency": {
            "in_process_p50_ms": med(seq["in_process"]),
            **{f"http_{name}_p50_ms": med(seq[f"http_{name}"]) for name in layouts},
            **{f"http_{name}_overhead_fraction": med(ratios(seq[f"http_{name}"], seq["in_process"])) - 1
               for name in layouts},
            "grpc_latency_p50_ms": med(seq["grpc_latency"]),
            "grpc_latency_overhead_fraction": med(ratios(seq["grpc_latency"], seq["in_process"])) - 1,
            "stack_cost_ms": med([a - b for a, b in zip(seq["digits_http"], seq["digits_in_process"])]),
            "floor_wait_ms": delay_ms, "floor_p50_ms": med(seq["floor_http"]),
            "floor_overhead_fraction": med(seq["floor_http"]) / delay_ms - 1,
            "floor_immediate_p50_ms": med(seq["floor_immediate_http"]),
        },
        "throughput": {name: {
            "in_process_per_s": med(tput[f"in_process_{name}"]), "served_per_s": med(tput[f"http_{name}"]),
            "fraction_of_same_layout": med(ratios(tput[f"http_{name}"], tput[f"in_process_{name}"])),
            "fraction_of_best_in_process": med(tput[f"http_{name}"]) / best_in_process,
        } for name in layouts},
    }
    write_json(args.out, result)
    lat, tp = result["latency"], result["throughput"]
    print(f"batch 1 p50: in-process {lat['in_process_p50_ms']:.2f} ms; floor (bare responder waiting "
          f"{delay_ms:.2f} ms) {lat['floor_p50_ms']:.2f} ms (+{100 * lat['floor_overhead_fraction']:.1f}%), "
          f"answering at once {lat['floor_immediate_p50_ms']:.2f} ms; "
          f"gRPC {lat['grpc_latency_p50_ms']:.2f} ms (+{100 * lat['grpc_latency_overhead_fraction']:.1f}%); "
          f"fixed cost of the stack {lat['stack_cost_ms']:.2f} ms")
    for name, (n, t, b) in layouts.items():
        th = tp[name]
        print(f"{name} layout ({n} instance(s) x {t} thread(s), max batch {b}): HTTP p50 "
              f"{lat[f'http_{name}_p50_ms']:.2f} ms (+{100 * lat[f'http_{name}_overhead_fraction']:.1f}%); "
              f"{args.clients} clients {th['served_per_s']:.1f}/s vs in-process {th['in_process_per_s']:.1f}/s "
              f"({100 * th['fraction_of_same_layout']:.0f}%; {100 * th['fraction_of_best_in_process']:.0f}% of the "
              f"best in-process layout)")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()

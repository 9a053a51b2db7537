"""Serving overhead: tritonclient against in-process ONNX Runtime, same model, same layout, same run.

    .venv/bin/python benchmarks/serve_bench.py            # ~3 min on a 2-core VM; writes results/serve-cpu.json

Model: ImageNet DiracNet-18 (random weights, calibrated BN), folded and exported with `export_onnx`, 224x224,
batch 1. Two server layouts, each compared with the same layout in-process (`load_served_model` in this
process, so the same sessions and threads; only the transport differs):
- latency layout: 1 instance x all cores (the `serve` default);
- throughput layout: one instance per core, 1 thread each (`--instances N --threads 1`).
Measured: (1) p50 of sequential calls through tritonclient binary HTTP (and gRPC) vs in-process calls;
(2) throughput with 8 concurrent clients vs 8 concurrent in-process callers; (3) the stack's fixed cost per
request, on the embedded digits model (about 0.2 ms of compute); (4) the floor: `floor_server.py`, a bare
asyncio responder that waits the in-process p50 and returns a canned answer, through the same tritonclient
calls. Shared machines drift, so the cases alternate in rounds and each ratio is the median of per-round
ratios. Clients and servers share the machine.
"""

from __future__ import annotations

import argparse
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
from serving import free_port, running_server  # noqa: E402  (the same bounded launcher the tests use)

from dirac_deploy.bench.env import collect_env  # noqa: E402
from dirac_deploy.bench.models import calibrate_bn  # noqa: E402
from dirac_deploy.bench.report import write_json  # noqa: E402
from dirac_deploy.data import embedded_checkpoint  # noqa: E402
from dirac_deploy.export.from_file import export_file  # noqa: E402
from dirac_deploy.export.onnx import export_onnx  # noqa: E402
from dirac_deploy.fold.fold import fold  # noqa: E402
from dirac_deploy.models.dirac import DiracNet  # noqa: E402
from dirac_deploy.serve.model import ModelSource, load_served_model  # noqa: E402
from dirac_deploy.spec import imagenet_spec  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"


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


def make_caller(model, url: str, where: str, x: np.ndarray):
    """A factory of per-client calls: in-process on `model`, or through tritonclient HTTP at `url`."""
    if where == "in_process":
        return lambda: (lambda: model.infer(x))
    return lambda: http_call(url, "diracnet18", x)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=5, help="alternating rounds of every case")
    ap.add_argument("--calls", type=int, default=40, help="sequential calls per case and round")
    ap.add_argument("--seconds", type=float, default=4.0, help="length of each throughput case per round")
    ap.add_argument("--clients", type=int, default=8)
    ap.add_argument("--out", type=Path, default=RESULTS / "serve-cpu.json")
    args = ap.parse_args()
    cores = len(os.sched_getaffinity(0))
    layouts = {"latency": (1, cores), "throughput": (cores, 1)}  # (instances, threads per instance)

    x = np.random.default_rng(0).standard_normal((1, 3, 224, 224)).astype(np.float32)
    xd = np.random.default_rng(1).standard_normal((1, 3, 32, 32)).astype(np.float32)
    with tempfile.TemporaryDirectory() as tmp:
        path, digits = Path(tmp) / "diracnet18.onnx", Path(tmp) / "digits.onnx"
        export_onnx(fold(calibrate_bn(DiracNet(imagenet_spec(18)), (3, 224, 224))).plain, path,
                    input_shape=(3, 224, 224))
        export_file(embedded_checkpoint(), digits)
        local = {k: load_served_model(ModelSource("diracnet18", path), threads=t, instances=n)
                 for k, (n, t) in layouts.items()}
        local_digits = load_served_model(ModelSource("digits", digits), threads=cores)
        delay_ms = p50_ms(lambda: local["latency"].infer(x), args.calls)  # what the floor server waits per call
        gport = free_port()
        with contextlib.ExitStack() as servers:
            floor_host = servers.enter_context(floor_server(delay_ms))
            lat_url, _ = servers.enter_context(running_server(str(path), str(digits), "--threads", str(cores),
                                                              "--grpc-port", str(gport)))
            tp_url, _ = servers.enter_context(running_server(str(path), "--instances", str(cores), "--threads", "1"))
            urls = {"latency": lat_url.removeprefix("http://"), "throughput": tp_url.removeprefix("http://")}
            seq_cases = {
                "in_process": lambda: local["latency"].infer(x),
                "http": http_call(urls["latency"], "diracnet18", x),
                "grpc": grpc_call(f"127.0.0.1:{gport}", "diracnet18", x),
                "digits_in_process": lambda: local_digits.infer(xd),
                "digits_http": http_call(urls["latency"], "digits", xd),
                "floor_http": http_call(floor_host, "floor", x),
            }
            tp_cases = {f"{where}_{layout}": make_caller(local[layout], urls[layout], where, x)
                        for layout in layouts for where in ("in_process", "http")}
            seq = {k: [] for k in seq_cases}
            tput = {k: [] for k in tp_cases}
            for r in range(args.rounds):
                print(f"round {r + 1}/{args.rounds}: sequential ...", file=sys.stderr)
                for k, call in seq_cases.items():
                    seq[k].append(p50_ms(call, args.calls))
                print(f"round {r + 1}/{args.rounds}: {args.clients} concurrent clients ...", file=sys.stderr)
                for k, make in tp_cases.items():
                    tput[k].append(throughput(make, args.clients, args.seconds))

    def ratios(a, b):
        return [x / y for x, y in zip(a, b)]

    def med(v):
        return statistics.median(v)

    result = {
        "env": collect_env("cpu", cores),
        "model": "DiracNet-18 (ImageNet, random weights, calibrated BN), folded ONNX, batch 1, 224x224",
        "method": f"{args.rounds} alternating rounds; sequential p50 over {args.calls} calls per case and round; "
                  f"throughput over {args.seconds} s with {args.clients} clients (threads, one tritonclient each) or "
                  f"{args.clients} in-process caller threads; ratios are medians of per-round ratios",
        "layouts": {k: {"instances": n, "threads": t} for k, (n, t) in layouts.items()},
        "sequential_p50_ms_per_round": seq,
        "throughput_per_s_per_round": tput,
        "latency": {
            "in_process_p50_ms": med(seq["in_process"]), "http_p50_ms": med(seq["http"]),
            "grpc_p50_ms": med(seq["grpc"]),
            "http_overhead_fraction": med(ratios(seq["http"], seq["in_process"])) - 1,
            "grpc_overhead_fraction": med(ratios(seq["grpc"], seq["in_process"])) - 1,
            "stack_cost_ms": med([a - b for a, b in zip(seq["digits_http"], seq["digits_in_process"])]),
            "floor_wait_ms": delay_ms, "floor_p50_ms": med(seq["floor_http"]),
            "floor_overhead_fraction": med(seq["floor_http"]) / delay_ms - 1,
        },
        "throughput": {layout: {
            "in_process_per_s": med(tput[f"in_process_{layout}"]), "served_per_s": med(tput[f"http_{layout}"]),
            "fraction": med(ratios(tput[f"http_{layout}"], tput[f"in_process_{layout}"])),
        } for layout in layouts},
    }
    best_local = max(v["in_process_per_s"] for v in result["throughput"].values())
    result["throughput"]["best_served_vs_best_in_process"] = \
        max(v["served_per_s"] for v in result["throughput"].values() if isinstance(v, dict)) / best_local
    write_json(args.out, result)
    lat, tp = result["latency"], result["throughput"]
    print(f"batch 1 p50: in-process {lat['in_process_p50_ms']:.2f} ms, HTTP {lat['http_p50_ms']:.2f} ms "
          f"(+{100 * lat['http_overhead_fraction']:.1f}%), gRPC {lat['grpc_p50_ms']:.2f} ms "
          f"(+{100 * lat['grpc_overhead_fraction']:.1f}%); fixed cost of the stack {lat['stack_cost_ms']:.2f} ms; "
          f"floor (bare responder waiting {delay_ms:.2f} ms) {lat['floor_p50_ms']:.2f} ms "
          f"(+{100 * lat['floor_overhead_fraction']:.1f}%)")
    for layout in layouts:
        t = tp[layout]
        print(f"{args.clients} clients, {layout} layout: served {t['served_per_s']:.1f}/s vs in-process "
              f"{t['in_process_per_s']:.1f}/s ({100 * t['fraction']:.0f}%)")
    print(f"best served vs best in-process: {100 * tp['best_served_vs_best_in_process']:.0f}%; wrote {args.out}")


if __name__ == "__main__":
    main()

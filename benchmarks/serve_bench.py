"""Serving overhead: tritonclient over HTTP (binary) against in-process ONNX Runtime, same model, same run.

    .venv/bin/python benchmarks/serve_bench.py            # ~1.5 min on a 2-core VM; writes results/serve-cpu.json

Model: ImageNet DiracNet-18 (random weights, calibrated BN), folded and exported with `export_onnx`, batch 1,
224x224. Measures (1) p50/p90/p99 latency of sequential calls, in-process vs through the server (HTTP binary,
and gRPC), and (2)
throughput with 8 concurrent clients vs an in-process sequential loop. Client and server share the machine.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import onnx
import tritonclient.http as triton

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from serving import free_port, running_server  # noqa: E402  (the same bounded launcher the tests use)

from dirac_deploy.bench.env import collect_env  # noqa: E402
from dirac_deploy.bench.models import calibrate_bn  # noqa: E402
from dirac_deploy.bench.report import write_json  # noqa: E402
from dirac_deploy.bench.timing import summarize  # noqa: E402
from dirac_deploy.export.onnx import export_onnx, ort_session  # noqa: E402
from dirac_deploy.fold.fold import fold  # noqa: E402
from dirac_deploy.models.dirac import DiracNet  # noqa: E402
from dirac_deploy.spec import imagenet_spec  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"


def sequential(call, n: int, warmup: int = 5) -> list[float]:
    for _ in range(warmup):
        call()
    out = []
    for _ in range(n):
        t0 = time.perf_counter()
        call()
        out.append((time.perf_counter() - t0) * 1e3)
    return out


def concurrent(make_call, clients: int, seconds: float) -> tuple[int, float]:
    """Requests completed by `clients` threads in `seconds` (each thread with its own client)."""
    done, stop = [0] * clients, time.monotonic() + seconds

    def worker(i):
        call = make_call()
        while time.monotonic() < stop:
            call()
            done[i] += 1

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(clients)]
    t0 = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return sum(done), time.monotonic() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--requests", type=int, default=100)
    ap.add_argument("--seconds", type=float, default=15.0)
    ap.add_argument("--out", type=Path, default=RESULTS / "serve-cpu.json")
    args = ap.parse_args()

    spec = imagenet_spec(18)
    plain = fold(calibrate_bn(DiracNet(spec), (3, 224, 224))).plain
    x = np.random.default_rng(0).standard_normal((1, 3, 224, 224)).astype(np.float32)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "diracnet18.onnx"
        export_onnx(plain, path, input_shape=(3, 224, 224))
        session = ort_session(onnx.load(path), threads=args.threads)
        direct = lambda: session.run(["logits"], {"input": x})  # noqa: E731
        print("in-process sequential ...", file=sys.stderr)
        local = summarize(sequential(direct, args.requests))
        local_rps = 1e3 / local.p50
        grpc_port = free_port()
        with running_server(str(path), "--threads", str(args.threads), "--grpc-port", str(grpc_port)) as (url, _):
            host = url.removeprefix("http://")

            def make_call():
                client = triton.InferenceServerClient(host, network_timeout=60)
                inp = triton.InferInput("input", list(x.shape), "FP32")
                inp.set_data_from_numpy(x)  # binary, tritonclient's default
                return lambda: client.infer("diracnet18", [inp]).as_numpy("logits")

            print("server sequential ...", file=sys.stderr)
            remote = summarize(sequential(make_call(), args.requests))
            import tritonclient.grpc as tgrpc

            gclient = tgrpc.InferenceServerClient(f"127.0.0.1:{grpc_port}")
            ginp = tgrpc.InferInput("input", list(x.shape), "FP32")
            ginp.set_data_from_numpy(x)
            print("server sequential, gRPC ...", file=sys.stderr)
            remote_grpc = summarize(sequential(lambda: gclient.infer("diracnet18", [ginp]).as_numpy("logits"),
                                               args.requests))
            print("server, 8 concurrent clients ...", file=sys.stderr)
            n, elapsed = concurrent(make_call, 8, args.seconds)
            print("in-process sequential again (drift check) ...", file=sys.stderr)
            local_after = summarize(sequential(direct, args.requests))
    served_rps = n / elapsed
    result = {
        "env": collect_env("cpu", args.threads),
        "model": "DiracNet-18 (ImageNet, random weights, calibrated BN), folded ONNX, batch 1, 224x224",
        "in_process_ms": local.to_dict(), "in_process_after_ms": local_after.to_dict(),
        "tritonclient_binary_http_ms": remote.to_dict(),
        "p50_overhead_fraction": remote.p50 / local.p50 - 1,
        "tritonclient_grpc_ms": remote_grpc.to_dict(),
        "grpc_p50_overhead_fraction": remote_grpc.p50 / local.p50 - 1,
        "in_process_throughput": local_rps, "served_throughput_8_clients": served_rps,
        "served_requests": n, "served_seconds": elapsed,
        "throughput_fraction": served_rps / local_rps,
    }
    write_json(args.out, result)
    print(f"in-process p50 {local.p50:.2f} ms (after: {local_after.p50:.2f}); through the server "
          f"p50 {remote.p50:.2f} ms (+{100 * result['p50_overhead_fraction']:.1f}%), gRPC p50 {remote_grpc.p50:.2f} ms "
          f"(+{100 * result['grpc_p50_overhead_fraction']:.1f}%); throughput {served_rps:.1f} "
          f"vs {local_rps:.1f} img/s in-process ({100 * result['throughput_fraction']:.0f}%); wrote {args.out}")


if __name__ == "__main__":
    main()

"""Where a served request's time goes: the server's Server-Timing header against the client's total.

    .venv/bin/python benchmarks/serve_breakdown.py     # ~30 s; writes results/serve-breakdown-cpu.json

DiracNet-18 (random weights, calibrated BN), batch 1, 224x224, binary HTTP through httpx; the server runs
with 2 threads on the same machine. Per request, from the server: receive (body), parse, queue (hop to the
instance thread), infer (the run), resume (hop back to the event loop), encode; outside = client total minus
the server's handler time (client encoding, HTTP framing, transport, wake-ups and response delivery).
Medians over the timed requests.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np
import onnx

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from dirac_deploy.bench.env import collect_env
from dirac_deploy.bench.models import calibrate_bn
from dirac_deploy.bench.report import write_json
from dirac_deploy.export.onnx import export_onnx
from dirac_deploy.folding.fold import fold
from dirac_deploy.models.dirac import DiracNet
from dirac_deploy.runtimes.onnxruntime import session as ort_session
from dirac_deploy.spec import imagenet_spec

from serving import running_server

RESULTS = Path(__file__).resolve().parent / "results"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--requests", type=int, default=100)
    ap.add_argument("--out", type=Path, default=RESULTS / "serve-breakdown-cpu.json")
    args = ap.parse_args()
    plain = fold(calibrate_bn(DiracNet(imagenet_spec(18)), (3, 224, 224))).plain
    x = np.random.default_rng(0).standard_normal((1, 3, 224, 224)).astype(np.float32)
    head = json.dumps({"inputs": [{"name": "input", "shape": list(x.shape), "datatype": "FP32",
                                   "parameters": {"binary_data_size": x.nbytes}}],
                       "parameters": {"binary_data_output": True}}).encode()
    body, headers = head + x.tobytes(), {"Inference-Header-Content-Length": str(len(head))}
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "diracnet18.onnx"
        export_onnx(plain, path, input_shape=(3, 224, 224))
        session = ort_session(onnx.load(path), threads=2)
        for _ in range(5):
            session.run(["logits"], {"input": x})
        local = []
        for _ in range(args.requests):
            t0 = time.perf_counter()
            session.run(["logits"], {"input": x})
            local.append((time.perf_counter() - t0) * 1e3)
        rows = []
        with running_server(str(path), "--threads", "2") as (url, _), httpx.Client(timeout=60) as client:
            for i in range(args.requests + 10):
                t0 = time.perf_counter()
                r = client.post(f"{url}/v2/models/diracnet18/infer", content=body, headers=headers)
                total = (time.perf_counter() - t0) * 1e3
                r.raise_for_status()
                parts = {k: float(v.split("dur=")[1]) for k, v in
                         (item.strip().split(";", 1) for item in r.headers["server-timing"].split(","))}
                if i >= 10:
                    rows.append({**parts, "outside": total - sum(parts.values()), "total": total})
    med = {k: float(np.median([r[k] for r in rows])) for k in rows[0]}
    result = {"env": collect_env("cpu", 2), "model": "DiracNet-18 folded ONNX, batch 1, 224x224, binary HTTP (httpx)",
              "in_process_ms_p50": float(np.median(local)), "server_timing_ms_p50": med, "requests": len(rows)}
    write_json(args.out, result)
    print(f"in-process {result['in_process_ms_p50']:.2f} ms; server: " +
          ", ".join(f"{k} {v:.2f}" for k, v in med.items()) + f" ms; wrote {args.out}")


if __name__ == "__main__":
    main()

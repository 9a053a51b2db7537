"""Measure before building (the trained-like int8 issue): how much of the int8 loss on a trained-like DiracNet the
projection form and activation equalization win back, on the edge stacks' PT2E path, simulated in PyTorch.

Forms of the folded chain, all exact in float (printed: max |logit| error relative to the chain): naive (the
chain as it is), identity (the unit-residual form, `quantize.edge.unit_residual_module`), projection and
projection + activation equalization at two alphas (`quantize.projection`, whose docstring has the equations).
Each is quantized by XNNPACK's PT2E quantizer (symmetric int8, per-channel weights, per-tensor activations) and
run in PyTorch; printed: logit SQNR and top-1 agreement against the fp32 chain on held-out random images.
Then, for each edge runtime installed, the identity and projection programs as that runtime runs them: their
delegation, SQNR, agreement, and batch-1 latency timed in interleaved rounds (the projection's ratio to the
identity program: median of per-round ratios, with its interquartile range).

    python benchmarks/trained_like.py --depth 18 -o demo-out/dn18-trained-like.pth
    python benchmarks/projection_probe.py demo-out/dn18-trained-like.pth
"""

from __future__ import annotations

import argparse

import numpy as np
import torch

from dirac_deploy._optional import available
from dirac_deploy.opener import open_artifact
from dirac_deploy.quantize.edge import program, quantized_module, unit_residual_module
from dirac_deploy.quantize.projection import equalized, projection_module
from dirac_deploy.runtimes import build
from dirac_deploy.timing import ratio_stats, time_interleaved


def _on_runtimes(chain, shape, calib: np.ndarray, ev: np.ndarray, ref: np.ndarray, threads: int) -> None:
    for engine, package in (("executorch", "executorch"), ("litert", "litert_torch")):
        if not available(package):
            print(f"{engine}: not installed")
            continue
        calls = {}
        for form in ("identity", "projection"):
            prog = program(engine, chain, shape, calib, form=form)
            runner = build(engine, prog, threads=threads)
            got = runner.run(ev).astype(np.float64)
            db = 10 * np.log10((ref ** 2).sum() / ((ref - got) ** 2).sum())
            print(f"{engine} {form:10s} XNNPACK runs {prog.delegated} ops (left out: {prog.not_delegated or 'none'}), "
                  f"convs {prog.runtime_ops['conv']}, int8 {db:5.1f} dB, agreement "
                  f"{(got.argmax(1) == ref.argmax(1)).mean():.1%}", flush=True)
            calls[form] = runner.bind(ev[:1])
        timed = time_interleaved(calls, rounds=5, iters=50, max_seconds=20)
        r = ratio_stats(timed["projection"], timed["identity"])
        print(f"{engine} batch 1, {threads} threads: identity p50 {timed['identity'].latency.p50:.2f} ms, projection "
              f"{timed['projection'].latency.p50:.2f} ms: {r['median']:.2f}x the identity program's time "
              f"(IQR {r['iqr'][0]:.2f}-{r['iqr'][1]:.2f})", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("model")
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    chain = open_artifact(args.model).plain.eval()
    shape = (3, args.size, args.size)
    calib = np.random.default_rng(1).standard_normal((32, *shape)).astype(np.float32)
    ev = np.random.default_rng(2).standard_normal((48, *shape)).astype(np.float32)
    with torch.no_grad():
        ref = chain(torch.from_numpy(ev)).double().numpy()
    projection = projection_module(chain)
    forms = {"naive": chain, "identity (unit residual)": unit_residual_module(chain), "projection": projection}
    for alpha in (0.5, 1.0):
        forms[f"projection + equalization alpha {alpha}"] = equalized(projection, calib[:16], alpha)
    for name, module in forms.items():
        with torch.no_grad():
            exact = float(np.abs(module(torch.from_numpy(ev)).double().numpy() - ref).max() / np.abs(ref).max())
            q = quantized_module("executorch", module, calib, 8)
            got = np.concatenate([q(torch.from_numpy(ev[i:i + 8])).double().numpy() for i in range(0, len(ev), 8)])
        db = 10 * np.log10((ref ** 2).sum() / ((ref - got) ** 2).sum())
        print(f"{name:40s} float error {exact:.1e}  int8 {db:5.1f} dB  agreement {(got.argmax(1) == ref.argmax(1)).mean():.1%}",
              flush=True)
    _on_runtimes(chain, shape, calib, ev, ref, args.threads)


if __name__ == "__main__":
    main()

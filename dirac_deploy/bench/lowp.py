"""Low-precision rows: each precision x runtime of the folded chain against fp32 ONNX Runtime, in one run.

Every artifact is built exactly as `dirac-deploy quantize` builds it (`quantize.run.build_artifact`, same
calibration, same proof) with its thresholds off, so a bad artifact still gets timed and its agreement and
SQNR say how bad it is. Per batch, all of them and the fp32 reference (the folded chain's audited ONNX on ONNX
Runtime with its default optimizations) are timed in the same interleaved rounds; `speedup_vs_fp32_ort` is the
median of the per-round ratios t_reference / t_artifact (above 1: faster than fp32, the direction of every
ratio in the bench JSON). Every runner here is built for shared cores (ONNX Runtime's intra-op spinning off),
so that its idle threads do not take the cores from the runtime timed next.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from .._optional import available, not_installed

REFERENCE = "fp32-onnxruntime"


def rows_for(precisions: tuple[str, ...]) -> list[tuple[str, str, str, str]]:
    """(row name, precision, method, target) of every artifact `quantize` builds in these precisions
    (`quantize.registry`, the one table of recipes)."""
    from ..quantize.registry import recipes_for

    return [(r.row, r.precision, r.method, r.target) for r in recipes_for(precisions)]


@dataclass
class LowpArtifact:
    name: str
    precision: str
    method: str
    target: str
    model: object = None  # onnx.ModelProto, openvino.Model or an ExecuTorch program
    quality: dict | None = None
    build_s: float | None = None
    missing: str = ""


def _why_not(precision: str, method: str, target: str) -> str:
    from ..quantize.registry import RECIPES

    for module, what in RECIPES[(precision, method, target)].requires:
        if not available(module.split(".")[0]):
            return not_installed(module, what)
    if precision == "bf16":
        from ..runtimes.openvino import bf16_supported

        if not bf16_supported():
            return "this CPU has no bf16 support in OpenVINO (no AVX-512 BF16 / AMX): it would run fp32"
    return ""


def build_artifacts(fp32_onnx, calib, evaluation, precisions: tuple[str, ...],
                    progress: Callable[[str], None] = lambda _msg: None, chain=None) -> list[LowpArtifact]:
    """The low-precision artifacts of `fp32_onnx` (of `chain`, the PyTorch chain, for the recipes built from it:
    ExecuTorch programs) for the asked precisions ("fp32" adds OpenVINO's and ExecuTorch's fp32)."""
    import time

    from ..quantize.run import build_artifact
    from ..runtimes import logits

    ref = logits("onnxruntime", fp32_onnx, evaluation.x)  # one fp32 reference for every artifact's proof
    out = []
    for name, precision, method, target in rows_for(precisions):
        art = LowpArtifact(name, precision, method, target, missing=_why_not(precision, method, target))
        progress(f"{name}: build and prove")
        if not art.missing:
            t0 = time.perf_counter()
            built = build_artifact(fp32_onnx, precision, method, target, calib, evaluation, min_agreement=0.0,
                                   max_accuracy_drop=100.0, layer_table=False, ref=ref, chain=chain)
            art.build_s = time.perf_counter() - t0
            art.model = built.model
            p = built.proof
            art.quality = {"agreement": p.agreement, "logit_sqnr_db": p.logit_sqnr_db, "accuracy": p.accuracy,
                           "accuracy_fp32": p.accuracy_fp32, "images": p.images, "data": p.data,
                           "int8_types": built.int8_types,
                           "forms": dict(_count(layer.form for layer in p.layers)) if p.layers else None,
                           "runtime_ops": p.runtime_ops}
        out.append(art)
    return out


def _count(items):
    from collections import Counter

    return Counter(items).most_common()


def prepare_call(art: LowpArtifact | None, fp32_onnx, x: np.ndarray, threads: int) -> Callable[[], object]:
    """A zero-argument call running `x` through the artifact (None: the fp32 ONNX Runtime reference)."""
    from ..runtimes import build

    # shared cores: an idle runner's threads would otherwise keep both cores busy while the next artifact is
    # timed in the same round
    if art is None:
        return build("onnxruntime", fp32_onnx, threads=threads, batch=len(x), precision="fp32",
                     shared_cores=True).bind(x)
    return build(art.target, art.model, threads=threads, batch=len(x), precision=art.precision,
                 shared_cores=True).bind(x)

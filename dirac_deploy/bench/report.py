"""Turning records into what readers look at: headline rows, a JSON file and a plot.

Each headline row is one (backend, batch): the folded chain's p50 and its speed-up over the best alternative a
user could run on the same backend (`vs best alternative`: the fastest of the unfolded model as trained and
exported with the exporter's defaults + onnxsim), over the model as trained, and over the matched ResNet.
Every speed-up is t_other / t_folded taken round by round in one interleaved run (> 1: the folded chain is
faster), with the interquartile range of the per-round ratios.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

from .._optional import require
from ..fileio import atomic_write
from .models import ABSORBED, ALTERNATIVES, AS_TRAINED, FOLDED, RESNET


@dataclass
class Ratio:
    median: float
    iqr: tuple[float, float]
    against: str  # the variant compared with


@dataclass
class Row:
    """One (backend, batch) line of the headline table; p50 latencies in ms, None when not measured."""

    backend: str
    batch: int
    folded: float | None
    best_alternative: Ratio | None = None
    best_alternative_ms: float | None = None
    vs_as_trained: Ratio | None = None
    vs_resnet: Ratio | None = None
    vs_absorbed: Ratio | None = None  # v1: the absorbed (conv-ReLU) form against the default form
    folded_gflops: float | None = None
    folded_peak_fraction: float | None = None
    warnings: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)


_BACKEND_ORDER = ("torch", "torch-compile", "torch-compile-max", "cuda-graph", "onnxruntime", "onnxruntime-noopt",
                  "openvino", "tensorrt")


def _order(backend: str) -> int:
    return _BACKEND_ORDER.index(backend) if backend in _BACKEND_ORDER else len(_BACKEND_ORDER)


def _ratio(rec: dict | None, name: str) -> Ratio | None:
    if not rec or rec["status"] != "ok" or not rec.get("vs_folded"):
        return None
    r = rec["vs_folded"]
    return Ratio(r["median"], tuple(r["iqr"]), name)


def headline_rows(records: list[dict]) -> list[Row]:
    """Ratios taken within one run: each row compares variants on the same backend and batch (the
    low-precision records have their own rows, `lowp_rows`)."""
    records = [r for r in records if not r.get("lowp")]
    index = {(r["variant"], r["backend"], r["batch"]): r for r in records}
    keys = sorted({(r["backend"], r["batch"]) for r in records}, key=lambda k: (_order(k[0]), k[1]))
    rows = []
    for backend, batch in keys:
        f = index.get((FOLDED, backend, batch))
        ok = f is not None and f["status"] == "ok"
        row = Row(backend, batch, f["latency_ms"]["p50"] if ok else None)
        alternatives = [index.get((a, backend, batch)) for a in ALTERNATIVES]
        measured = [a for a in alternatives if a and a["status"] == "ok" and a.get("vs_folded")]
        if measured:
            best = min(measured, key=lambda a: a["latency_ms"]["p50"])
            row.best_alternative = _ratio(best, best["variant"])
            row.best_alternative_ms = best["latency_ms"]["p50"]
        row.vs_as_trained = _ratio(index.get((AS_TRAINED, backend, batch)), AS_TRAINED)
        row.vs_resnet = _ratio(index.get((RESNET, backend, batch)), RESNET)
        row.vs_absorbed = _ratio(index.get((ABSORBED, backend, batch)), ABSORBED)
        if ok:
            row.folded_gflops, row.folded_peak_fraction = f["gflops"], f["peak_fraction"]
            row.warnings = list(f.get("warnings", []))
        rows.append(row)
    return rows


@dataclass
class LowpRow:
    name: str  # precision-method-runtime, e.g. int8-identity-onnxruntime
    batch: int
    ms: float | None
    vs_fp32_ort: Ratio | None  # t_artifact / t_fp32_ort: below 1 is faster
    quality: dict | None
    status: str
    warnings: list[str] = field(default_factory=list)

    @property
    def speedup(self) -> float | None:
        return 1 / self.vs_fp32_ort.median if self.vs_fp32_ort else None

    def to_dict(self) -> dict:
        d = asdict(self)
        d["speedup_vs_fp32_ort"] = self.speedup
        return d


def lowp_rows(records: list[dict]) -> list[LowpRow]:
    """One row per low-precision artifact and batch, the fp32 ONNX Runtime reference first."""
    rows = []
    for r in records:
        if not r.get("lowp"):
            continue
        ratio = r.get("vs_fp32_ort")
        rows.append(LowpRow(r["lowp_name"], r["batch"], r["latency_ms"]["p50"] if r["status"] == "ok" else None,
                            Ratio(ratio["median"], tuple(ratio["iqr"]), "fp32-onnxruntime") if ratio else None,
                            r.get("quality"), r["status"], list(r.get("warnings", []))))
    return sorted(rows, key=lambda row: (row.batch, row.name != "fp32-onnxruntime"))


def skipped(records: list[dict]) -> dict[str, str]:
    """Unique skip reasons keyed by 'variant/backend'."""
    return {f"{r['variant']}/{r['backend']}": r["status"] for r in records if r["status"] != "ok"}


def write_json(path: str | Path, payload: dict) -> Path:
    text = json.dumps(payload, indent=1, sort_keys=False)
    return atomic_write(path, lambda tmp: tmp.write_text(text + "\n"))


def write_plot(path: str | Path, records: list[dict], title: str) -> Path:
    """Left: p50 latency against batch, one colour per backend; solid the folded chain, dashed the best
    alternative on that backend, dotted the matched ResNet. Right: the speed-up over the best alternative per
    backend and batch, with the interquartile range of the per-round ratios; 1.0 marks a tie."""
    matplotlib = require("matplotlib")
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D

    records = [r for r in records if not r.get("lowp")]
    rows = headline_rows(records)
    backends = sorted({r.backend for r in rows if r.folded}, key=_order)
    batches = sorted({r.batch for r in rows})
    colors = {b: plt.get_cmap("tab10")(i) for i, b in enumerate(backends)}
    index = {(r["variant"], r["backend"], r["batch"]): r for r in records if r["status"] == "ok"}
    fig, (ax_lat, ax_ratio) = plt.subplots(1, 2, figsize=(13, 5))
    for b in backends:
        own = [r for r in rows if r.backend == b and r.folded]
        ax_lat.plot([r.batch for r in own], [r.folded for r in own], "-o", color=colors[b])
        alt = [r for r in own if r.best_alternative_ms]
        ax_lat.plot([r.batch for r in alt], [r.best_alternative_ms for r in alt], "--s", color=colors[b], alpha=0.8)
        res = [(bt, index[(RESNET, b, bt)]["latency_ms"]["p50"]) for bt in batches if (RESNET, b, bt) in index]
        ax_lat.plot([p[0] for p in res], [p[1] for p in res], ":^", color=colors[b], alpha=0.6)
    ax_lat.set_xscale("log", base=2)
    ax_lat.set_yscale("log")
    ax_lat.set_xticks(batches, [str(b) for b in batches])
    ax_lat.minorticks_off()
    ax_lat.set_xlabel("batch size")
    ax_lat.set_ylabel("latency p50 (ms, log)")
    ax_lat.grid(True, which="both", alpha=0.3)
    handles = [Line2D([], [], color=colors[b], lw=3, label=b) for b in backends]
    handles += [Line2D([], [], color="gray", ls=s, marker=m, label=lab) for s, m, lab in
                (("-", "o", "folded"), ("--", "s", "best alternative"), (":", "^", "matched ResNet"))]
    ax_lat.legend(handles=handles, fontsize=8, loc="upper left")
    width = 0.8 / max(len(batches), 1)
    for j, bt in enumerate(batches):
        for i, b in enumerate(backends):
            r = next((r for r in rows if r.backend == b and r.batch == bt), None)
            if r is None or r.best_alternative is None:
                continue
            q = r.best_alternative
            ax_ratio.bar(i + (j - (len(batches) - 1) / 2) * width, q.median, width * 0.9, color=colors[b],
                         alpha=0.4 + 0.6 * (j + 1) / len(batches),
                         yerr=[[q.median - q.iqr[0]], [q.iqr[1] - q.median]], capsize=3)
    ax_ratio.axhline(1.0, color="black", lw=1)
    ax_ratio.set_xticks(range(len(backends)), backends, rotation=20, fontsize=8)
    ax_ratio.set_ylabel("speed-up over the best alternative (t_alt / t_folded)")
    ax_ratio.set_title(f"bars left to right: batch {', '.join(map(str, batches))}; whiskers: IQR over rounds",
                       fontsize=9)
    ax_ratio.grid(True, axis="y", alpha=0.3)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    try:
        return atomic_write(path, lambda tmp: fig.savefig(tmp, dpi=110, format="png"))
    finally:
        plt.close(fig)

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

# The unit of every number in the bench JSON whose name does not carry it (docs/reports.md).
BENCH_UNITS = {"latency_ms": "ms per call", "round_p50_ms": "ms per call", "throughput": "images/s",
               "peak_mem_mb": "MiB", "gflops": "GFLOP/s", "peak_fraction": "fraction of the practical peak, 0..1",
               "agreement": "fraction of images, 0..1", "top1_agreement": "fraction of images, 0..1",
               "accuracy": "fraction of images, 0..1", "accuracy_fp32": "fraction of images, 0..1",
               "logit_sqnr_db": "dB", "median / iqr (ratios)": "t_other / t_this: above 1, this is faster",
               "prepare_s": "s", "export_s": "s"}


@dataclass
class Ratio:
    median: float
    iqr: tuple[float, float]
    against: str  # the variant compared with


@dataclass
class Row:
    """One (backend, batch) line of the headline table; p50 latencies in ms, None when not measured."""

    backend: str  # with its numeric format unless plain fp32: 'cuda-graph fp16' (bench.formats)
    batch: int
    folded_ms: float | None
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


def where(rec: dict) -> str:
    """The row a record belongs to: its backend, plus its numeric format unless plain fp32 ('cuda-graph fp16')."""
    fmt = rec.get("format", "fp32")
    return rec["backend"] if fmt == "fp32" else f"{rec['backend']} {fmt}"


def _order(label: str) -> tuple[int, int, str]:
    from .formats import FORMATS

    backend, _, fmt = label.partition(" ")
    b = _BACKEND_ORDER.index(backend) if backend in _BACKEND_ORDER else len(_BACKEND_ORDER)
    return b, FORMATS.index(fmt or "fp32") if (fmt or "fp32") in FORMATS else len(FORMATS), label


def _ratio(rec: dict | None, name: str) -> Ratio | None:
    if not rec or rec["status"] != "ok" or not rec.get("vs_folded"):
        return None
    r = rec["vs_folded"]
    return Ratio(r["median"], tuple(r["iqr"]), name)


def headline_rows(records: list[dict]) -> list[Row]:
    """Ratios taken within one run: each row compares variants on the same backend and batch (the
    low-precision records have their own rows, `lowp_rows`)."""
    records = [r for r in records if not r.get("lowp")]
    index = {(r["variant"], where(r), r["batch"]): r for r in records}
    keys = sorted({(where(r), r["batch"]) for r in records}, key=lambda k: (_order(k[0]), k[1]))
    rows = []
    for backend, batch in keys:
        f = index.get((FOLDED, backend, batch)) or {}
        ok = f.get("status") == "ok"
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
class BestRow:
    """Per numeric format and batch, the fastest way to run the folded chain against the fastest way to run an
    alternative (and the matched ResNet), whichever backends those are. Records from different backends were
    timed in different interleaved groups, so `speedup` is a ratio of p50s, not a per-round median."""

    format: str
    batch: int
    folded_ms: float
    folded_backend: str
    alternative_ms: float | None = None
    alternative: str | None = None  # 'variant on backend'
    speedup: float | None = None  # alternative_ms / folded_ms: above 1 the folded chain is faster
    resnet_ms: float | None = None
    resnet_backend: str | None = None

    def to_dict(self) -> dict:
        return asdict(self)


def best_rows(records: list[dict]) -> list[BestRow]:
    """The fastest measured folded run per (format, batch) against the fastest alternative and ResNet run."""
    from .formats import FORMATS

    ok = [r for r in records if not r.get("lowp") and r["status"] == "ok"]
    rows = []
    for fmt, batch in sorted({(r.get("format", "fp32"), r["batch"]) for r in ok},
                             key=lambda k: (FORMATS.index(k[0]) if k[0] in FORMATS else len(FORMATS), k[1])):
        group = [r for r in ok if r.get("format", "fp32") == fmt and r["batch"] == batch]

        def fastest(names, group=group):
            cands = [r for r in group if r["variant"] in names]
            return min(cands, key=lambda r: r["latency_ms"]["p50"]) if cands else None

        f, alt, res = fastest((FOLDED,)), fastest(ALTERNATIVES), fastest((RESNET,))
        if f is None:
            continue
        row = BestRow(fmt, batch, f["latency_ms"]["p50"], f["backend"])
        if alt is not None:
            row.alternative_ms, row.alternative = alt["latency_ms"]["p50"], f"{alt['variant']} on {alt['backend']}"
            row.speedup = row.alternative_ms / row.folded_ms
        if res is not None:
            row.resnet_ms, row.resnet_backend = res["latency_ms"]["p50"], res["backend"]
        rows.append(row)
    return rows


@dataclass
class LowpRow:
    name: str  # precision-method-runtime, e.g. int8-identity-onnxruntime
    batch: int
    ms: float | None
    speedup_vs_fp32_ort: Ratio | None  # t_fp32_ort / t_artifact, like every ratio here: above 1 is faster
    quality: dict | None
    status: str
    warnings: list[str] = field(default_factory=list)

    @property
    def speedup(self) -> float | None:
        return self.speedup_vs_fp32_ort.median if self.speedup_vs_fp32_ort else None

    def to_dict(self) -> dict:
        return asdict(self)


def _speedup(rec: dict) -> Ratio | None:
    """The record's speed-up over fp32 ORT; a version-2 file recorded the inverse (`vs_fp32_ort`)."""
    if rec.get("speedup_vs_fp32_ort"):
        r = rec["speedup_vs_fp32_ort"]
        return Ratio(r["median"], tuple(r["iqr"]), "fp32-onnxruntime")
    if rec.get("vs_fp32_ort"):
        r = rec["vs_fp32_ort"]
        return Ratio(1 / r["median"], (1 / r["iqr"][1], 1 / r["iqr"][0]), "fp32-onnxruntime")
    return None


def lowp_rows(records: list[dict]) -> list[LowpRow]:
    """One row per low-precision artifact and batch, the fp32 ONNX Runtime reference first."""
    rows = []
    for r in records:
        if not r.get("lowp"):
            continue
        rows.append(LowpRow(r["lowp_name"], r["batch"], r["latency_ms"]["p50"] if r["status"] == "ok" else None,
                            _speedup(r), r.get("quality"), r["status"], list(r.get("warnings", []))))
    return sorted(rows, key=lambda row: (row.batch, row.name != "fp32-onnxruntime"))


def skipped(records: list[dict]) -> dict[str, str]:
    """Unique skip reasons keyed by 'variant/backend' ('variant/backend format' for a non-fp32 format)."""
    return {f"{r['variant']}/{where(r)}": r["status"] for r in records if r["status"] != "ok"}


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

    from ..plotting import readable_log_axis

    lowp = lowp_rows(records)
    records = [r for r in records if not r.get("lowp")]
    rows = headline_rows(records)
    backends = sorted({r.backend for r in rows if r.folded_ms}, key=_order)
    batches = sorted({r.batch for r in rows})
    cmap = plt.get_cmap("tab10" if len(backends) <= 10 else "tab20")
    colors = {b: cmap(i % cmap.N) for i, b in enumerate(backends)}
    index = {(r["variant"], where(r), r["batch"]): r for r in records if r["status"] == "ok"}
    panels = 3 if any(r.speedup_vs_fp32_ort for r in lowp) else 2
    fig, axes = plt.subplots(1, panels, figsize=(6.5 * panels, 5))
    ax_lat, ax_ratio = axes[0], axes[1]
    for b in backends:
        own = [r for r in rows if r.backend == b and r.folded_ms]
        ax_lat.plot([r.batch for r in own], [r.folded_ms for r in own], "-o", color=colors[b])
        alt = [r for r in own if r.best_alternative_ms]
        ax_lat.plot([r.batch for r in alt], [r.best_alternative_ms for r in alt], "--s", color=colors[b], alpha=0.8)
        res = [(bt, index[(RESNET, b, bt)]["latency_ms"]["p50"]) for bt in batches if (RESNET, b, bt) in index]
        ax_lat.plot([p[0] for p in res], [p[1] for p in res], ":^", color=colors[b], alpha=0.6)
    ax_lat.set_xscale("log", base=2)
    ax_lat.set_yscale("log")
    ax_lat.set_xticks(batches, [str(b) for b in batches])
    ax_lat.minorticks_off()
    readable_log_axis(ax_lat)
    ax_lat.set_xlabel("batch size")
    ax_lat.set_ylabel("latency p50 (ms, log)")
    ax_lat.grid(True, which="both", alpha=0.3)
    handles = [Line2D([], [], color=colors[b], lw=3, label=b) for b in backends]
    handles += [Line2D([], [], color="gray", ls=s, marker=m, label=lab) for s, m, lab in
                (("-", "o", "folded"), ("--", "s", "best alternative"), (":", "^", "matched ResNet"))]
    ax_lat.legend(handles=handles, fontsize=8, loc="best")  # where it covers the fewest points
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
    ratios = [r.best_alternative.median for r in rows if r.best_alternative is not None]
    if ratios and max(ratios) / max(min(ratios), 1e-9) > 20:  # one backend's 100x would flatten the others' 1.5x
        ax_ratio.set_yscale("log")
        readable_log_axis(ax_ratio)
    ax_ratio.set_xticks(range(len(backends)), backends, rotation=20, fontsize=8)
    ax_ratio.set_ylabel("speed-up over the best alternative (t_alt / t_folded)")
    ax_ratio.set_title(f"bars left to right: batch {', '.join(map(str, batches))}; whiskers: IQR over rounds",
                       fontsize=9)
    ax_ratio.grid(True, axis="y", alpha=0.3)
    if panels == 3:
        _plot_lowp(axes[2], lowp)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    try:
        return atomic_write(path, lambda tmp: fig.savefig(tmp, dpi=110, format="png"))
    finally:
        plt.close(fig)


def _plot_lowp(ax, rows: list[LowpRow]) -> None:
    """Low precision: the speed-up over fp32 ONNX Runtime per artifact (a bar per batch, IQR whiskers), each
    labelled with its logit SQNR and top-1 agreement, so speed and accuracy are read together."""
    import matplotlib.pyplot as plt

    names = list(dict.fromkeys(r.name for r in rows if r.speedup_vs_fp32_ort))
    batches = sorted({r.batch for r in rows})
    height = 0.8 / max(len(batches), 1)
    cmap = plt.get_cmap("Blues")
    for j, batch in enumerate(batches):
        for i, name in enumerate(names):
            r = next((r for r in rows if r.name == name and r.batch == batch and r.speedup_vs_fp32_ort), None)
            if r is None or r.speedup_vs_fp32_ort is None:
                continue
            s = r.speedup_vs_fp32_ort
            y = i + (j - (len(batches) - 1) / 2) * height
            ax.barh(y, s.median, height * 0.9, color=cmap(0.4 + 0.5 * (j + 1) / len(batches)),
                    xerr=[[s.median - s.iqr[0]], [s.iqr[1] - s.median]], capsize=2,
                    label=f"batch {batch}" if i == 0 else None)
            if j == len(batches) - 1 and r.quality:
                q = r.quality
                ax.text(max(s.iqr[1], s.median) * 1.02, i, f"{q['logit_sqnr_db']:.0f} dB, {100 * q['agreement']:.1f}%",
                        va="center", fontsize=7)
    ax.axvline(1.0, color="black", lw=1)
    ax.set_yticks(range(len(names)), names, fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel("speed-up over fp32 ONNX Runtime (t_fp32 / t_artifact)")
    ax.set_title("low precision: speed-up; labels: logit SQNR, top-1 agreement", fontsize=9)
    ax.legend(fontsize=7, loc="best")
    ax.grid(True, axis="x", alpha=0.3)
    ax.set_xlim(0, max(r.speedup_vs_fp32_ort.iqr[1] for r in rows if r.speedup_vs_fp32_ort) * 1.45)

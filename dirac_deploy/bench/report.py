"""Turning records into what readers look at: headline ratios, a JSON file and a latency/throughput plot."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from ..fileio import atomic_write


@dataclass
class Row:
    """One (backend, batch) line of the headline table; p50 latencies in ms, None when not measured."""

    backend: str
    batch: int
    folded: float | None
    unfolded: float | None
    resnet: float | None
    folded_gflops: float | None
    folded_peak_fraction: float | None

    @property
    def speedup_vs_unfolded(self) -> float | None:
        """t_unfolded / t_folded: how many times faster the folded chain is (> 1 is faster)."""
        return self.unfolded / self.folded if self.folded and self.unfolded else None

    @property
    def speedup_vs_resnet(self) -> float | None:
        """t_resnet / t_folded (> 1: the folded chain is faster than the ResNet)."""
        return self.resnet / self.folded if self.folded and self.resnet else None


def headline_rows(records: list[dict]) -> list[Row]:
    """Ratios taken within one run: each row compares variants on the same backend and batch."""
    index = {(r["variant"], r["backend"], r["batch"]): r for r in records}
    keys = sorted({(r["backend"], r["batch"]) for r in records}, key=lambda k: (_order(k[0]), k[1]))
    rows = []
    for backend, batch in keys:
        def p50(variant):
            r = index.get((variant, backend, batch))
            return r["latency_ms"]["p50"] if r and r["status"] == "ok" else None
        f = index.get(("folded", backend, batch))
        ok = f is not None and f["status"] == "ok"
        rows.append(Row(backend, batch, p50("folded"), p50("unfolded"), p50("resnet"),
                        f["gflops"] if ok else None, f["peak_fraction"] if ok else None))
    return rows


_BACKEND_ORDER = ("torch", "torch-compile", "cuda-graph", "onnxruntime", "onnxruntime-noopt", "tensorrt")


def _order(backend: str) -> int:
    return _BACKEND_ORDER.index(backend) if backend in _BACKEND_ORDER else len(_BACKEND_ORDER)


def skipped(records: list[dict]) -> dict[str, str]:
    """Unique skip reasons keyed by 'variant/backend'."""
    return {f"{r['variant']}/{r['backend']}": r["status"] for r in records if r["status"] != "ok"}


def write_json(path: str | Path, payload: dict) -> Path:
    text = json.dumps(payload, indent=1, sort_keys=False)
    return atomic_write(path, lambda tmp: tmp.write_text(text + "\n"))


def write_plot(path: str | Path, records: list[dict], title: str) -> Path:
    """Latency (p50) and throughput against batch size, one line per (variant, backend)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    colors = {"folded": "tab:green", "unfolded": "tab:red", "resnet": "tab:blue"}
    styles = ["-", "--", ":", "-.", (0, (5, 1)), (0, (1, 1))]
    fig, (ax_lat, ax_thr) = plt.subplots(1, 2, figsize=(12, 4.8))
    series: dict[tuple[str, str], list[tuple[int, float, float]]] = {}
    for r in records:
        if r["status"] == "ok":
            series.setdefault((r["variant"], r["backend"]), []).append((r["batch"], r["latency_ms"]["p50"], r["throughput"]))
    for (variant, backend), pts in sorted(series.items(), key=lambda kv: (_order(kv[0][1]), kv[0][0])):
        pts.sort()
        style = styles[_order(backend) % len(styles)]
        label = f"{variant} / {backend}"
        ax_lat.plot([p[0] for p in pts], [p[1] for p in pts], linestyle=style, marker="o", color=colors.get(variant), label=label)
        ax_thr.plot([p[0] for p in pts], [p[2] for p in pts], linestyle=style, marker="o", color=colors.get(variant), label=label)
    batches = sorted({r["batch"] for r in records})
    for ax, ylabel in ((ax_lat, "latency p50 (ms, log)"), (ax_thr, "throughput (images/s)")):
        ax.set_xscale("log", base=2)
        ax.set_xticks(batches, [str(b) for b in batches])
        ax.minorticks_off()
        ax.set_xlabel("batch size")
        ax.set_ylabel(ylabel)
        ax.grid(True, which="both", alpha=0.3)
    ax_lat.set_yscale("log")
    ax_thr.legend(fontsize=8, loc="best")
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()

    def save(tmp: Path) -> None:
        fig.savefig(tmp, dpi=110, format="png")

    try:
        return atomic_write(path, save)
    finally:
        plt.close(fig)

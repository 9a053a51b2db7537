"""Render benchmarks/results/*.json as the Markdown tables in the README (stdout).

    .venv/bin/python benchmarks/render_tables.py [results/cpu-diracnet18.json ...]
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from dirac_deploy.bench.report import headline_rows, skipped

RESULTS = Path(__file__).resolve().parent / "results"


def _f(v, spec=".2f", suffix=""):
    return "–" if v is None else f"{v:{spec}}{suffix}"


def render(path: Path) -> str:
    payload = json.loads(path.read_text())
    env, records = payload["env"], payload["records"]
    hardware = env.get("gpu", {}).get("name") or env["cpu"]
    lines = [f"**{env['model']}** on {env['device']} — {hardware}, {env['threads']} threads, torch "
             f"{env['versions']['torch']}, onnxruntime {env['versions']['onnxruntime']}, git {str(env['git_sha'])[:8]} "
             f"(`{path.name}`)", "",
             "| backend | batch | folded p50 ms | unfolded p50 ms | ResNet p50 ms | folded speed-up vs unfolded "
             "| vs ResNet | folded GFLOP/s | of practical peak |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in headline_rows(records):
        lines.append(f"| {r.backend} | {r.batch} | {_f(r.folded)} | {_f(r.unfolded)} | {_f(r.resnet)} | "
                     f"{_f(r.speedup_vs_unfolded, '.2f', 'x')} | {_f(r.speedup_vs_resnet, '.2f', 'x')} | "
                     f"{_f(r.folded_gflops, '.0f')} | {_f(r.folded_peak_fraction and 100 * r.folded_peak_fraction, '.0f', '%')} |")
    peaks = ", ".join(f"{b} {p['gflops']:.0f}" for b, p in env["peak"].items() if p.get("gflops"))
    lines += ["", f"Practical peak (one conv3x3 256->256, 56x56, batch 8, same backend and threads), GFLOP/s: {peaks}."]
    skips = sorted(set(skipped(records).values()))
    if skips:
        lines.append("Skipped: " + "; ".join(s.removeprefix("skipped: ") for s in skips) + ".")
    return "\n".join(lines)


def main() -> None:
    paths = [Path(p) for p in sys.argv[1:]] or sorted(RESULTS.glob("*-diracnet*.json"))
    print("\n\n".join(render(p) for p in paths))


if __name__ == "__main__":
    main()

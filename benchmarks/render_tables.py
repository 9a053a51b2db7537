"""Render benchmarks/results/*.json as Markdown tables: to stdout, or into docs/benchmarks.md.

    .venv/bin/python benchmarks/render_tables.py [results/cpu-diracnet18.json ...]
    .venv/bin/python benchmarks/render_tables.py --write docs/benchmarks.md

Without files it renders every bench result in results/ ({cpu,cuda}-*.json): the fp32 runs first, then the
low-precision runs. `--write PAGE` replaces what lies between the page's `<!-- render_tables: begin -->` and
`<!-- render_tables: end -->` lines, so the page and the committed JSON agree (a test checks it).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from dirac_deploy.bench.report import headline_rows, lowp_rows, skipped

RESULTS = Path(__file__).resolve().parent / "results"
SHORT = {"unfolded-as-trained": "as trained", "unfolded-exported": "exported + onnxsim"}


def _f(v, spec=".2f", suffix=""):
    return "–" if v is None else f"{v:{spec}}{suffix}"


def _r(r) -> str:
    return "–" if r is None else f"{r.median:.2f}x ({r.iqr[0]:.2f}–{r.iqr[1]:.2f})"


def render(path: Path) -> str:
    payload = json.loads(path.read_text())
    env, records = payload["env"], payload["records"]
    hardware = env.get("gpu", {}).get("name") or env["cpu"]
    rows = headline_rows(records)
    v1 = any(r.vs_absorbed for r in rows)
    features = env.get("cpu_features", {}).get("summary")
    if features:
        hardware += f" ({features})"
    lines = [f"**{env['model']}** on {env['device']}: {hardware}, {env['threads']} threads, torch "
             f"{env['versions']['torch']}, onnxruntime {env['versions']['onnxruntime']}, "
             f"{env.get('rounds', 1)} interleaved rounds, git {str(env['git_sha'])[:8]}"
             f"{' (dirty tree)' if env.get('git_dirty') else ''} (`{path.name}`)", "",
             "| backend | batch | folded p50 ms | best alternative | its p50 ms | **vs best alternative** | "
             "vs as-trained | vs ResNet |" + (" absorbed form |" if v1 else "") + " folded GFLOP/s | of peak |",
             "|---|---:|---:|---|---:|---:|---:|---:|" + ("---:|" if v1 else "") + "---:|---:|"]
    for r in rows:
        best = SHORT.get(r.best_alternative.against, r.best_alternative.against) if r.best_alternative else "–"
        flag = " ⚠" if r.warnings else ""
        lines.append(f"| {r.backend} | {r.batch} | {_f(r.folded_ms)}{flag} | {best} | {_f(r.best_alternative_ms)} | "
                     f"**{_r(r.best_alternative)}** | {_r(r.vs_as_trained)} | {_r(r.vs_resnet)} |"
                     + (f" {_r(r.vs_absorbed)} |" if v1 else "")
                     + f" {_f(r.folded_gflops, '.0f')} | "
                     f"{_f(r.folded_peak_fraction and 100 * r.folded_peak_fraction, '.0f', '%')} |")
    peaks = ", ".join(f"{b} {p['gflops']:.0f}" for b, p in env["peak"].items() if p.get("gflops"))
    lines += ["", f"Speed-up = t_other / t_folded, the median of per-round ratios (IQR in brackets); > 1: the "
                  f"folded chain is faster. ⚠: a noisy row (see the JSON's warnings). Practical peak (one conv3x3 "
                  f"256->256, 56x56, batch 8, same backend and threads), GFLOP/s: {peaks}."]
    variants = env.get("variants", {})
    if variants:
        lines.append("Variants: " + "; ".join(
            f"{name}: {v['params']:,} parameters, {v['flops'] / 1e9:.2f} GFLOP/image"
            + (f", ONNX in {v['export_s']:.1f} s" if v.get("export_s") else "")
            for name, v in variants.items() if not v.get("missing")) + ".")
    skips = sorted(set(skipped([r for r in records if not r.get("lowp")]).values()))
    if skips:
        lines.append("Skipped: " + "; ".join(s.removeprefix("skipped: ") for s in skips) + ".")
    low = lowp_rows(records)
    if low:
        lines += ["", *render_lowp(env, low)]
    return "\n".join(lines)


def render_lowp(env: dict, rows) -> list[str]:
    info = env.get("lowp", {})
    lines = [f"Low precision against fp32 ONNX Runtime of the folded chain, same run. Calibration: "
             f"{info.get('calibration')}; agreement and SQNR on {info.get('evaluation')}.", "",
             "| artifact | batch | p50 ms | **speed-up vs fp32 ORT** | top-1 agreement | logit SQNR | accuracy (fp32) |",
             "|---|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        q = r.quality or {}
        if r.status != "ok":
            lines.append(f"| {r.name} | {r.batch} | {r.status.removeprefix('skipped: ')} | | | | |")
            continue
        speed = "reference" if r.name == "fp32-onnxruntime" else (
            f"**{r.speedup:.2f}x** ({r.speedup_vs_fp32_ort.iqr[0]:.2f}–{r.speedup_vs_fp32_ort.iqr[1]:.2f})")
        acc = "–" if q.get("accuracy") is None else f"{100 * q['accuracy']:.2f}% ({100 * q['accuracy_fp32']:.2f}%)"
        agree = "–" if q.get("agreement") is None else f"{100 * q['agreement']:.2f}%"
        sqnr = "–" if q.get("logit_sqnr_db") is None else f"{q['logit_sqnr_db']:.1f} dB"
        lines.append(f"| {r.name} | {r.batch} | {_f(r.ms)}{' ⚠' if r.warnings else ''} | {speed} | {agree} | {sqnr} | "
                     f"{acc} |")
    builds = ", ".join(f"{n} {a['build_s']:.0f} s" for n, a in info.get("artifacts", {}).items() if a.get("build_s"))
    lines += ["", f"Speed-up = t_fp32_ort / t_artifact, median of per-round ratios (IQR). Build and proof time: "
                  f"{builds}."]
    return lines


BEGIN, END = "<!-- render_tables: begin -->", "<!-- render_tables: end -->"


def bench_results(folder: Path = RESULTS) -> list[Path]:
    """Every `dirac-deploy bench` result in `folder`: fp32 runs first, then low-precision runs, by name."""
    paths = [p for p in sorted(folder.glob("cpu-*.json")) + sorted(folder.glob("cuda-*.json"))
             if json.loads(p.read_text()).get("schema") == "dirac-deploy/bench"]
    return sorted(paths, key=lambda p: ("-lowp-" in p.name, p.name))


def render_all(paths: list[Path]) -> str:
    """Each result under its own heading; a "Low precision" heading before the first low-precision run."""
    parts, lowp_started = [], False
    for p in paths:
        if "-lowp-" in p.name and not lowp_started:
            parts.append("### Low precision")
            lowp_started = True
        parts += [f"#### `{p.name}`", render(p)]
    return "\n\n".join(parts)


def replace_block(page: str, block: str) -> str:
    """`page` with the text between its BEGIN and END lines replaced by `block`."""
    head, sep, rest = page.partition(BEGIN + "\n")
    _, sep2, tail = rest.partition(END)
    if not sep or not sep2:
        raise SystemExit(f"the page has no '{BEGIN}' ... '{END}' lines to write between")
    return f"{head}{BEGIN}\n{block}\n{END}{tail}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("results", nargs="*", type=Path, help="benchmark JSON files [default: every bench result in "
                                                           "results/]")
    ap.add_argument("--write", type=Path, metavar="PAGE", help="write the tables into PAGE between its markers")
    args = ap.parse_args()
    text = render_all(args.results or bench_results())
    if args.write is None:
        print(text)
        return
    args.write.write_text(replace_block(args.write.read_text(), text))
    print(f"wrote the tables into {args.write}")


if __name__ == "__main__":
    main()

"""cli/tables.py: at 80 columns every number stays whole: columns leave (and say so) before a value is cut."""

from __future__ import annotations

import io
import json
from pathlib import Path
from types import SimpleNamespace

import pytest
from rich.console import Console

from dirac_deploy.cli.tables import (
    Column,
    _ms,
    _ratio,
    fitted_table,
    print_bench,
    print_layer_stats,
    print_quantize_layers,
)

RESULTS = Path(__file__).resolve().parents[1] / "benchmarks" / "results"


def _render(fn, width: int) -> str:
    buf = io.StringIO()
    fn(Console(file=buf, width=width, highlight=False, color_system=None))
    return buf.getvalue()


def _assert_fits(text: str, width: int) -> list[str]:
    lines = text.splitlines()
    assert max(len(line) for line in lines) <= width, text
    assert "\u2026" not in text, text  # rich's ellipsis: something was cut
    return lines


@pytest.mark.parametrize("name", sorted(p.name for p in RESULTS.glob("*.json") if p.name.startswith("cpu-")))
@pytest.mark.parametrize("width", [80, 100, 160])
def test_bench_tables_keep_every_number_whole(name, width):
    from dirac_deploy.bench.report import headline_rows, lowp_rows
    from dirac_deploy.bench.run import BenchResult

    doc = json.loads((RESULTS / name).read_text())
    text = _render(lambda c: print_bench(c, BenchResult(doc["env"], doc["records"])), width)
    lines = _assert_fits(text, width)
    for row in headline_rows(doc["records"]):
        r = row.best_alternative
        assert any(f"{r.median:.2f}x ({r.iqr[0]:.2f}-{r.iqr[1]:.2f})" in line for line in lines), (name, width)
    for row in lowp_rows(doc["records"]):
        if row.speedup_vs_fp32_ort and row.name != "fp32-onnxruntime":
            s = row.speedup_vs_fp32_ort
            assert any(f"{s.median:.2f}x ({s.iqr[0]:.2f}-{s.iqr[1]:.2f})" in line for line in lines), (name, width)
        if row.ms is not None:
            assert any(f" {_ms(row.ms)} " in f" {line} " for line in lines), (row.name, width)


def test_a_ratio_whose_spread_crosses_one_is_marked():
    assert _ratio(SimpleNamespace(median=0.87, iqr=(0.78, 1.26))) == "~0.87x (0.78-1.26)"
    assert _ratio(SimpleNamespace(median=1.5, iqr=(1.2, 1.7))) == "1.50x (1.20-1.70)"


def test_narrow_tables_drop_columns_and_say_which_never_cut_a_number():
    cols = [Column("layer", "left", wraps=True), Column("a"), Column("b", drop=1), Column("c", drop=2)]
    rows = [["group2_block3_conv_with_a_long_name", "1.67e+04", "123456789.123", "987654321.987"]]
    text = _render(lambda c: fitted_table(c, "t", cols, rows), 40)
    lines = _assert_fits(text, 40)
    assert any("1.67e+04" in line for line in lines)
    assert "left out at 40 columns: b, c" in text  # the highest `drop` first, until it fits
    wide = _render(lambda c: fitted_table(c, "t", cols, rows), 120)
    assert "left out" not in wide and all(v in wide for v in rows[0])


def test_layer_tables_keep_their_exponents_at_80_columns():
    stats = [SimpleNamespace(name=f"group{g}_block{b}_conv", shape=(128, 128, 3, 3), input_size=8,
                             identity_distance=0.259, identity_dominance=50.7, identity_dominance_max=1.67e4,
                             spectral_norm=10.4, condition_number=9.19, activation_rms=4.55)
             for g in range(3) for b in range(4)]
    text = _render(lambda c: print_layer_stats(c, "DiracNet-16-2 (CIFAR stem, 10 classes)", (3, 32, 32), stats), 80)
    lines = _assert_fits(text, 80)
    assert sum("50.7 / 1.67e+04" in line for line in lines) == len(stats)
    layers = [SimpleNamespace(name=f"group{i}_block0_conv", form="int8-residual", output_sqnr_db=23.456,
                              weight_sqnr_db=float("inf"), identity_dominance=1.67e4) for i in range(3)]
    text = _render(lambda c: print_quantize_layers(c, layers), 80)
    lines = _assert_fits(text, 80)
    assert all("23.5" in line and "exact" in line and "1.67e+04" in line for line in lines if "_conv" in line)
    assert "median" in text  # the dominance column says which statistic it is

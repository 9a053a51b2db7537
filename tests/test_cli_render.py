"""cli/render.py: tables at 80 columns keep every number whole, piped output has no trailing blanks, usage
errors and --help fit a narrow terminal."""

from __future__ import annotations

import io
import json
import re
from pathlib import Path
from types import SimpleNamespace

import pytest
from click.testing import CliRunner
from rich.console import Console

from dirac_deploy.cli import main
from dirac_deploy.cli.render import (
    Column,
    _TrimmedLines,
    fitted_table,
    print_bench,
    print_layer_stats,
    print_quantize_layers,
)

RESULTS = Path(__file__).resolve().parents[1] / "benchmarks" / "results"
NUMBER = re.compile(r"~?\d[\d.,]*(?:e[+-]\d+)?x?%?")


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
            from dirac_deploy.cli.render import _ms

            assert any(f" {_ms(row.ms)} " in f" {line} " for line in lines), (row.name, width)


def test_a_ratio_whose_spread_crosses_one_is_marked():
    from dirac_deploy.cli.render import _ratio

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


def test_piped_lines_carry_no_trailing_blanks():
    buf = io.StringIO()
    stream = _TrimmedLines(buf)
    Console(file=stream, width=60, highlight=False, color_system=None).print("a table row\nand another")
    stream.flush()
    assert buf.getvalue() == "a table row\nand another\n"


def test_usage_errors_are_one_line_with_exit_status_2():
    for args in (["quantize"], ["fold", "x.pth", "--bogus"], ["bogus"], ["quantize", "m.pth", "-o", "q.xml",
                                                                          "--precision", "int9"]):
        res = CliRunner().invoke(main, args)
        assert res.exit_code == 2, (args, res.output)
        lines = [line for line in res.output.splitlines() if line.strip()]
        assert len(lines) == 1 and lines[0].startswith("Error: ") and "--help" in lines[0], (args, res.output)
    res = CliRunner().invoke(main, [])  # a bare command still prints its help
    assert "Usage:" in res.output


@pytest.mark.parametrize("command", ["", "demo", "fold", "inspect", "export", "quantize", "bench", "serve"])
def test_help_fits_80_columns(command):
    res = CliRunner().invoke(main, [*command.split(), "--help"], terminal_width=80)
    assert res.exit_code == 0
    too_long = [line for line in res.output.splitlines() if len(line) > 80]
    assert not too_long, too_long


def test_normalization_prints_four_significant_digits():
    from dirac_deploy.cli.render import input_rows

    rows = dict(input_rows((3, 32, 32), [0.39551234567, 0.3946, 0.3951], [0.2325432, 0.2336, 0.2329], {}))
    assert rows["normalization"].plain == "mean [0.3955, 0.3946, 0.3951], std [0.2325, 0.2336, 0.2329]"

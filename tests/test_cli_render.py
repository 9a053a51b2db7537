"""cli/render.py: piped output has no trailing blanks, usage errors are one line, --help fits 80 columns,
normalization prints at four digits."""

from __future__ import annotations

import io

import pytest
from click.testing import CliRunner
from rich.console import Console

from dirac_deploy.cli import main
from dirac_deploy.cli.render import _TrimmedLines


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


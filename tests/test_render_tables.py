"""benchmarks/render_tables.py: the tables in docs/benchmarks.md are what the committed JSON renders to."""

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def render_tables():
    spec = importlib.util.spec_from_file_location("render_tables", ROOT / "benchmarks" / "render_tables.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_docs_tables_are_the_committed_results(render_tables):
    page = (ROOT / "docs" / "benchmarks.md").read_text()
    paths = render_tables.bench_results()
    assert {p.name for p in paths} >= {"cpu-diracnet18.json", "cpu-lowp-diracnet18.json", "cpu-lowp-noisy.json"}
    expected = render_tables.replace_block(page, render_tables.render_all(paths))
    assert page == expected, "docs/benchmarks.md is stale: run benchmarks/render_tables.py --write docs/benchmarks.md"


def test_a_page_without_markers_is_refused(render_tables):
    with pytest.raises(SystemExit, match="no '<!-- render_tables: begin -->'"):
        render_tables.replace_block("# a page\n", "| table |")


def test_render_tables_has_help():
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "render_tables.py"), "--help"],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0 and "--write" in proc.stdout

"""The guard rails hold: the import-linter contracts pass on the tree and fail on a back-import."""

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LINT = Path(sys.executable).parent / "lint-imports"


def _lint(tree: Path) -> subprocess.CompletedProcess:
    return subprocess.run([str(LINT), "--no-cache"], cwd=tree, capture_output=True, text=True, timeout=300,
                          env={"PYTHONPATH": str(tree), "PATH": "/usr/bin:/bin"})


@pytest.fixture
def tree(tmp_path):
    shutil.copytree(ROOT / "dirac_deploy", tmp_path / "dirac_deploy", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path)
    return tmp_path


def test_contracts_hold_on_the_tree(tree):
    res = _lint(tree)
    assert res.returncode == 0, res.stdout[-2000:]
    assert "0 broken" in res.stdout


@pytest.mark.parametrize("module, back_import", [
    ("kernels.py", "from .cli import main"),  # the math importing the command line
    ("artifacts/onnx.py", "from ..folding import chain"),  # the torch-free artifact core importing the fold
    ("serve/model.py", "from ..export import onnx"),  # the server building artifacts instead of serving them
    ("models/plain.py", "import click"),  # a library module importing the CLI's library
    # strict rows: what the tiers' sibling exceptions used to let through
    ("quantize/speed.py", "from ..bench import runners"),  # a stage borrowing from a stage above it
    ("pipeline.py", "from . import opener"),  # the fold importing the opener that folds through it
    ("checkpoint/reading.py", "from ..artifacts import plain"),  # a reader asking an artifact to word a refusal
])
def test_a_back_import_breaks_a_contract(tree, module, back_import):
    with open(tree / "dirac_deploy" / module, "a") as f:
        f.write(f"\n{back_import}  # deliberate back-import\n")
    res = _lint(tree)
    assert res.returncode != 0
    assert "BROKEN" in res.stdout and f"dirac_deploy.{module.removesuffix('.py').replace('/', '.')}" in res.stdout

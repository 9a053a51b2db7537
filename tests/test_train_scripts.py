"""scripts/train_digits.py and train_noisy_digits.py: they write to an output folder, never over the package data
unless asked."""

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "dirac_deploy" / "data"

pytest.importorskip("sklearn")


def _digests() -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(DATA.iterdir()) if p.is_file()}


def _run(script: str, *args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, str(ROOT / "scripts" / script), *args], cwd=cwd, capture_output=True,
                          text=True, timeout=600, env=env)


def test_train_digits_writes_to_its_output_folder_not_the_package(tmp_path):
    before = _digests()
    proc = _run("train_digits.py", "--epochs", "1", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = tmp_path / "train-out"
    assert {p.name for p in out.iterdir()} == {"digits_diracnet.pt7", "digits_holdout.npz", "digits_calib.npz"}
    assert _digests() == before  # the bundled model and data untouched


def test_both_scripts_name_the_flag_that_replaces_the_package_data(tmp_path):
    for script in ("train_digits.py", "train_noisy_digits.py"):
        proc = _run(script, "--help", cwd=tmp_path)
        assert proc.returncode == 0, proc.stderr[-2000:]
        assert "--out-dir" in proc.stdout and "--replace-package-data" in proc.stdout
    proc = _run("train_digits.py", "--out-dir", "x", "--replace-package-data", cwd=tmp_path)
    assert proc.returncode != 0 and "give one" in proc.stderr
    assert not (tmp_path / "x").exists()


def test_the_bundled_digits_files_are_what_quantize_reads_and_match_the_embedded_data():
    """`quantize --calib dirac_deploy/data/digits_calib.npz` (and --eval the held-out file) reads their `x`,
    which is the embedded preprocessing of their raw 8x8 `images`."""
    import numpy as np

    from dirac_deploy import data
    from dirac_deploy.quantize.data import load_data

    calib = load_data(str(DATA / "digits_calib.npz"), (3, 32, 32), role="calib")
    np.testing.assert_array_equal(calib.x, data.load_calibration().numpy())
    held = load_data(str(DATA / "digits_holdout.npz"), (3, 32, 32), role="eval")
    x, labels = data.load_holdout()
    np.testing.assert_array_equal(held.x, x.numpy())
    np.testing.assert_array_equal(held.labels, labels.numpy())

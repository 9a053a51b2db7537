"""converters/hkl_to_pth.py on HDF5 files that hickle writes with the structures the v1 notebook loads."""

import importlib.util
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from dirac_deploy import fold_checkpoint

import reference

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "converters" / "hkl_to_pth.py"
hickle = pytest.importorskip("hickle", reason="hickle (test extra) converts the released v1 .hkl files")


def _run(*args):
    return subprocess.run([sys.executable, str(SCRIPT), *map(str, args)], capture_output=True, text=True, timeout=120)


def _numpy(d):
    return {k: (_numpy(v) if isinstance(v, dict) else v.numpy()) for k, v in d.items()}


def _same(tensors: dict, arrays: dict, prefix=""):
    for k, v in arrays.items():
        if isinstance(v, dict):
            _same(tensors, v, f"{prefix}{k}.")
        else:
            assert np.array_equal(tensors[f"{prefix}{k}"].numpy(), v.astype(np.float32)), k


def test_nested_params_stats_round_trip_and_fold(tmp_path):
    params = reference.define_params_v1("cifar", 10, seed=4)
    ckpt = reference.as_v1_hkl_naming(params)  # {'params': ..., 'stats': ...} as the notebook loads it
    data = {"params": _numpy(ckpt["params"]), "stats": _numpy(ckpt["stats"])}
    hickle.dump(data, str(tmp_path / "v1.hkl"), mode="w")
    proc = _run(tmp_path / "v1.hkl", tmp_path / "v1.pth")
    assert proc.returncode == 0, proc.stderr
    out = torch.load(tmp_path / "v1.pth", weights_only=True)
    _same(out["params"], data["params"])
    _same(out["stats"], data["stats"])
    assert fold_checkpoint(tmp_path / "v1.pth", tmp_path / "plain.pth").proof.ok


def test_deeper_nesting_is_joined_with_dots(tmp_path):
    params = reference.define_params_v1("cifar", 10, seed=5)
    ckpt = reference.as_v1_hkl_naming(params)
    nested = {}
    for k, v in ckpt["params"].items():  # group0.block0.conv -> {'group0': {'block0': {'conv': ...}}}
        head, _, rest = k.partition(".")
        if rest.startswith("block"):
            block, _, leaf = rest.partition(".")
            nested.setdefault(head, {}).setdefault(block, {})[leaf] = v.numpy()
        else:
            nested[k] = v.numpy()
    hickle.dump({"params": nested, "stats": _numpy(ckpt["stats"])}, str(tmp_path / "n.hkl"), mode="w")
    assert _run(tmp_path / "n.hkl", tmp_path / "n.pth").returncode == 0
    out = torch.load(tmp_path / "n.pth", weights_only=True)
    assert set(out["params"]) == set(ckpt["params"])


def test_folded_export_structure_is_written_as_a_flat_state_dict(tmp_path):
    folded = {"conv.weight": np.ones((8, 3, 7, 7), np.float32), "conv.bias": np.zeros(8, np.float32),
              "group0.block0.conv.weight": np.ones((8, 16, 3, 3), np.float32),
              "group0.block0.conv.bias": np.zeros(8, np.float32),
              "fc.weight": np.ones((10, 8), np.float32), "fc.bias": np.zeros(10, np.float32)}
    hickle.dump(folded, str(tmp_path / "f.hkl"), mode="w")
    proc = _run(tmp_path / "f.hkl", tmp_path / "f.pth")
    assert proc.returncode == 0 and "v1 folded state_dict" in proc.stdout, proc.stderr
    out = torch.load(tmp_path / "f.pth", weights_only=True)
    _same(out, folded)


@pytest.mark.parametrize("payload, fragment", [
    ([1, 2, 3], "expected a dict of arrays, found a list"),
    ({"weights": np.ones(3)}, "neither {'params', 'stats'}"),
    ({"params": {"conv": np.ones((4, 3, 3, 3))}, "stats": "oops"}, "must both be dicts"),
    ({"params": {"conv": {"x": "text"}}, "stats": {}}, "conv.x is a str, not an array of numbers"),
])
def test_anything_else_is_refused_with_one_line(tmp_path, payload, fragment):
    hickle.dump(payload, str(tmp_path / "x.hkl"), mode="w")
    proc = _run(tmp_path / "x.hkl", tmp_path / "x.pth")
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 1 and len(lines) == 1 and fragment in lines[0], proc.stderr
    assert not (tmp_path / "x.pth").exists()


def test_split_is_importable_without_hickle():
    spec = importlib.util.spec_from_file_location("hkl_to_pth", SCRIPT)
    conv = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(conv)
    with pytest.raises(conv.ConversionError, match="no stem 'conv'"):
        conv.split_params_stats({"fc.weight": np.ones((2, 2))})

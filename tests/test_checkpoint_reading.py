"""checkpoint.reading: files safe loading refuses say what to do, and torch's own warnings stay out of the
one line a user sees."""

from __future__ import annotations

import collections
import pickle
import subprocess
import sys

import torch

CLI = [sys.executable, "-m", "dirac_deploy.cli"]


class Payload:  # a class no safe loader admits
    pass


def test_a_protocol_5_pickle_names_trust_checkpoint_in_one_line(tmp_path):
    path = tmp_path / "p5.pt"
    path.write_bytes(pickle.dumps({"w": torch.zeros(2), "o": collections.OrderedDict(x=Payload())}, protocol=5))
    proc = subprocess.run([*CLI, "fold", str(path), "-o", str(tmp_path / "x.pth")], capture_output=True, text=True)
    assert proc.returncode == 1 and "--trust-checkpoint" in proc.stderr
    assert "weights_only=False" not in proc.stderr and len(proc.stderr.strip().splitlines()) == 1, proc.stderr


def test_a_quantized_tensor_checkpoint_is_one_line_without_torch_warnings(tmp_path):
    path = tmp_path / "q.pt"
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.save({"w": torch.quantize_per_tensor(torch.randn(4), 0.1, 0, torch.qint8)}, path)
    proc = subprocess.run([*CLI, "fold", str(path), "-o", str(tmp_path / "x.pth")], capture_output=True, text=True)
    assert proc.returncode == 1 and "quantized tensor" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr

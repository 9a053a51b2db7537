"""The CLI end to end, and every bad input: one line on stderr, non-zero exit, no traceback, nothing written."""

import argparse
import hashlib
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from dirac_deploy import load_plain
from dirac_deploy.cli import main
from dirac_deploy.models.resnet import resnet

import reference

CLI = [sys.executable, "-m", "dirac_deploy.cli"]


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture
def good_ckpt(tmp_path) -> Path:
    p = tmp_path / "model.pt7"
    torch.save(reference.as_flat_params(reference.define_params("cifar", 10, seed=11)), p)
    return p


def test_fold_prints_summary_and_writes_plain(tmp_path, good_ckpt):
    res = CliRunner().invoke(main, ["fold", str(good_ckpt), "-o", str(tmp_path / "plain.pth")])
    assert res.exit_code == 0, res.output
    for word in ("v2-flat-params", "DiracNet-10-1", "parameters", "FLOPs", "fold error", "top-1 agreement"):
        assert word in res.stdout
    assert load_plain(tmp_path / "plain.pth").meta["source"]["sha256"] == _sha(good_ckpt)


def test_inspect_prints_without_folding(tmp_path, good_ckpt):
    res = CliRunner().invoke(main, ["inspect", str(good_ckpt)])
    assert res.exit_code == 0, res.output
    assert "v2-flat-params" in res.stdout and "2 x 16ch" in res.stdout
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.pt7"]


def test_help_lists_commands():
    res = CliRunner().invoke(main, ["--help"])
    assert res.exit_code == 0 and "fold" in res.stdout and "inspect" in res.stdout and "demo" in res.stdout


def test_console_script_as_subprocess(tmp_path, good_ckpt):
    exe = Path(sys.executable).with_name("dirac-deploy")
    cmd = [str(exe)] if exe.exists() else CLI
    out = tmp_path / "plain.pth"
    proc = subprocess.run([*cmd, "fold", str(good_ckpt), "-o", str(out)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert out.exists() and "Folded" in proc.stdout


# --- bad inputs ------------------------------------------------------------------------------------------

def _make_bad(kind: str, d: Path) -> tuple[Path, str]:
    """A bad input file and a fragment the error line must contain."""
    src = d / "in.pth"
    params = reference.define_params("cifar", 10, seed=12)
    if kind == "missing":
        return d / "nope.pth", "no such file"
    if kind == "text":
        src.write_text("hello, I am not a checkpoint\n")
        return src, "not a PyTorch checkpoint"
    if kind == "empty":
        src.write_bytes(b"")
        return src, "empty"
    if kind == "hdf5":
        src.write_bytes(b"\x89HDF\r\n\x1a\n" + b"\0" * 64)
        return src, "converters/hkl_to_pth.py"
    if kind in ("truncated", "truncated-legacy"):
        full = d / "full.pth"
        torch.save(reference.as_flat_params(params), full, _use_new_zipfile_serialization=kind == "truncated")
        src.write_bytes(full.read_bytes()[: full.stat().st_size // 2])
        full.unlink()
        return src, "truncated or corrupt"
    if kind == "unknown-layout":
        torch.save(resnet(18).state_dict(), src)
        return src, "conv1.weight"
    if kind == "nan":
        params["group1.block0.conv"][0, 0, 0, 0] = float("nan")
        torch.save(reference.as_flat_params(params), src)
        return src, "group1.block0.conv.weight contains 1 NaN/Inf"
    if kind == "inconsistent":
        params["fc.weight"] = torch.randn(10, 17)
        torch.save(reference.as_flat_params(params), src)
        return src, "fc.weight is [10, 17]"
    if kind == "bad-stem":
        params["conv"] = torch.randn(16, 3, 5, 5)
        torch.save(reference.as_flat_params(params), src)
        return src, "5x5 conv"
    if kind == "not-a-dict":
        torch.save(torch.randn(3), src)
        return src, "a Tensor, not a dict"
    if kind == "unsafe":
        ckpt = reference.as_flat_params(params)
        ckpt["opt"] = argparse.Namespace(lr=0.1)  # what many training scripts saved beside the weights
        torch.save(ckpt, src)
        return src, "--trust-checkpoint"
    raise AssertionError(kind)


BAD = ["missing", "text", "empty", "hdf5", "truncated", "truncated-legacy", "unknown-layout", "nan",
       "inconsistent", "bad-stem", "not-a-dict", "unsafe"]


@pytest.mark.parametrize("kind", BAD)
def test_bad_input_gives_one_line_and_writes_nothing(tmp_path, kind):
    src, fragment = _make_bad(kind, tmp_path)
    before = sorted(p.name for p in tmp_path.iterdir())
    res = CliRunner().invoke(main, ["fold", str(src), "-o", str(tmp_path / "plain.pth")])
    assert res.exit_code == 1
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), res.stderr
    assert fragment in lines[0]
    assert "Traceback" not in res.output
    assert sorted(p.name for p in tmp_path.iterdir()) == before  # no output, no temp file


@pytest.mark.parametrize("kind", ["truncated", "unknown-layout", "unsafe"])
def test_bad_input_as_subprocess(tmp_path, kind):
    src, fragment = _make_bad(kind, tmp_path)
    proc = subprocess.run([*CLI, "fold", str(src), "-o", str(tmp_path / "o.pth")], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 1
    assert len(proc.stderr.strip().splitlines()) == 1 and fragment in proc.stderr
    assert "Traceback" not in proc.stderr and not (tmp_path / "o.pth").exists()


def test_unknown_layout_names_seen_and_expected_keys(tmp_path):
    src, _ = _make_bad("unknown-layout", tmp_path)
    res = CliRunner().invoke(main, ["inspect", str(src)])
    assert "keys seen conv1.weight, bn1.weight" in res.stderr
    for layout in ("v2-flat-params", "v2-params-stats", "v2-folded", "dirac-deploy"):
        assert layout in res.stderr


def test_trust_flag_allows_full_unpickling(tmp_path):
    src, _ = _make_bad("unsafe", tmp_path)
    res = CliRunner().invoke(main, ["fold", str(src), "-o", str(tmp_path / "plain.pth"), "--trust-checkpoint"])
    assert res.exit_code == 0, res.output
    assert (tmp_path / "plain.pth").exists()


def test_output_equal_to_input_is_refused_and_input_untouched(tmp_path, good_ckpt):
    digest = _sha(good_ckpt)
    for out in (good_ckpt, tmp_path / "." / good_ckpt.name):
        res = CliRunner().invoke(main, ["fold", str(good_ckpt), "-o", str(out)])
        assert res.exit_code == 1 and "is the input file" in res.stderr
    assert _sha(good_ckpt) == digest


def test_output_directory_must_exist(tmp_path, good_ckpt):
    res = CliRunner().invoke(main, ["fold", str(good_ckpt), "-o", str(tmp_path / "no" / "plain.pth")])
    assert res.exit_code == 1 and "does not exist" in res.stderr


def test_failed_proof_writes_nothing_and_keeps_existing_output(tmp_path, good_ckpt, monkeypatch):
    from dirac_deploy.folding import fold as fold_module

    real = fold_module.folded_plain

    def broken(model, ncrelu="keep"):  # a fold bug: one bias off
        plain, notes = real(model, ncrelu)
        plain.group2_block1_conv.bias.data += 1.0
        return plain, notes

    out = tmp_path / "plain.pth"
    out.write_bytes(b"previous artifact")
    monkeypatch.setattr(fold_module, "folded_plain", broken)
    res = CliRunner().invoke(main, ["fold", str(good_ckpt), "-o", str(out)])
    assert res.exit_code == 1 and "does not reproduce" in res.stderr
    assert out.read_bytes() == b"previous artifact"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.pt7", "plain.pth"]


def test_load_plain_rejects_a_checkpoint_that_is_not_plain(tmp_path, good_ckpt):
    from dirac_deploy import CheckpointError

    with pytest.raises(CheckpointError, match="not a dirac-deploy plain file"):
        load_plain(good_ckpt)


def test_json_report_path_is_checked_before_anything_is_written(tmp_path, good_ckpt):
    """A --json in a missing directory, or naming the input or the output, fails before the fold: the plain
    file is not written, the input is unchanged."""
    before = _sha(good_ckpt)
    out = tmp_path / "plain.pth"
    for bad, needle in ((tmp_path / "nodir" / "f.json", "does not exist"), (good_ckpt, "is the input file"),
                        (out, "is the input file")):
        for cmd in (["fold", str(good_ckpt), "-o", str(out)], ["export", str(good_ckpt), "--onnx", str(out)]):
            res = CliRunner().invoke(main, [*cmd, "--json", str(bad)])
            assert res.exit_code != 0 and needle in res.output, res.output
            assert not out.exists() and _sha(good_ckpt) == before
    res = CliRunner().invoke(main, ["inspect", str(good_ckpt), "--json", str(good_ckpt)])
    assert res.exit_code != 0 and _sha(good_ckpt) == before


def test_user_text_is_printed_as_text_not_markup(tmp_path, good_ckpt):
    """Paths and notes holding [tags] (a v1 fold note says `[relu(x), 0]`) print verbatim."""
    odd = tmp_path / "a[bold]b[" / "x]"  # the path holds "[bold]" and "[/x]"
    odd.mkdir(parents=True)
    ckpt = odd / "m[red].pt7"
    ckpt.write_bytes(good_ckpt.read_bytes())
    res = CliRunner().invoke(main, ["fold", str(ckpt), "-o", str(odd / "p[dim].pth")], env={"COLUMNS": "300"})
    assert res.exit_code == 0, res.output
    assert "m[red].pt7" in res.output and "[/x]/p[dim].pth" in res.output
    res = CliRunner().invoke(main, ["inspect", str(odd / "p[dim].pth")], env={"COLUMNS": "300"})
    assert res.exit_code == 0 and "p[dim].pth" in res.output, res.output


def test_inspect_onnx_shows_its_normalization_and_fails_when_a_check_fails(tmp_path):
    import json

    import onnx

    from dirac_deploy import data

    onnx_path = tmp_path / "m.onnx"
    assert CliRunner().invoke(main, ["export", str(data.embedded_checkpoint()), "--onnx", str(onnx_path)]).exit_code == 0
    res = CliRunner().invoke(main, ["inspect", str(onnx_path), "--json", "-"])
    assert res.exit_code == 0, res.output
    doc = json.loads(res.output)
    assert doc["ok"] and doc["input"]["mean"] == pytest.approx(list(data.DIGITS_MEAN))
    assert doc["input"]["std"] == pytest.approx(list(data.DIGITS_STD))
    res = CliRunner().invoke(main, ["inspect", str(onnx_path)], env={"COLUMNS": "200"})
    assert "mean [0.3054" in res.output
    model = onnx.load(str(onnx_path))
    init = model.graph.initializer[0]
    w = onnx.numpy_helper.to_array(init) * 1.5  # an edited weight: the recorded parity probe no longer holds
    init.CopyFrom(onnx.numpy_helper.from_array(w, init.name))
    from dirac_deploy.artifacts.digest import stamp_onnx

    stamp_onnx(model)  # the digest recomputed, as a deliberate attacker would: the probe must still catch it
    onnx.save(model, str(tmp_path / "edited.onnx"))
    for extra in ([], ["--json", "-"]):
        res = CliRunner().invoke(main, ["inspect", str(tmp_path / "edited.onnx"), *extra])
        assert res.exit_code == 1 and "failed its checks" in res.output, res.output
        assert extra or res.output.count("FAILED") == 1, res.output  # the table says why; the error points to it


def test_every_docs_page_the_help_names_exists():
    import re

    root = Path(__file__).resolve().parents[1]
    named = set()
    for name, cmd in main.commands.items():
        res = CliRunner().invoke(main, [name, "--help"], env={"COLUMNS": "300"})
        assert res.exit_code == 0, name
        assert "Machine-readable reports" not in res.output
        named |= set(re.findall(r"docs/[\w-]+\.md", res.output))
    assert "docs/reports.md" in named
    for page in named:
        assert (root / page).is_file(), page

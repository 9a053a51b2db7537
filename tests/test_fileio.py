"""fileio: outputs never replace an input or a file an input reads, and several outputs land together or not
at all."""

from __future__ import annotations

import os

import onnx
import pytest
from click.testing import CliRunner

from dirac_deploy import data
from dirac_deploy.cli import main
from dirac_deploy.errors import OutputPathError
from dirac_deploy.fileio import check_not_input, referenced_files, write_all


@pytest.fixture(scope="module")
def external(tmp_path_factory):
    """An exported ONNX whose weights live in ext.bin beside it."""
    d = tmp_path_factory.mktemp("ext")
    assert CliRunner().invoke(main, ["export", str(data.embedded_checkpoint()), "--onnx", str(d / "m.onnx")]).exit_code == 0
    model = onnx.load(str(d / "m.onnx"))
    onnx.save(model, str(d / "ext.onnx"), save_as_external_data=True, location="ext.bin", size_threshold=0)
    return d


def test_files_an_input_reads_are_found_and_protected(external):
    assert referenced_files(external / "ext.onnx") == [external / "ext.bin"]
    assert referenced_files(external / "m.onnx") == []
    assert referenced_files(external / "q.xml") == []  # no such file
    with pytest.raises(OutputPathError, match="ext.bin"):
        check_not_input(external / "ext.bin", external / "ext.onnx")


def test_commands_refuse_to_overwrite_external_data(external):
    before = (external / "ext.bin").read_bytes()
    for cmd in (["export", str(external / "ext.onnx"), "--onnx", str(external / "ext.bin")],
                ["quantize", str(external / "ext.onnx"), "-o", str(external / "ext.xml"), "--target", "openvino"],
                ["inspect", str(external / "ext.onnx"), "--json", str(external / "ext.bin")]):
        res = CliRunner().invoke(main, cmd)
        assert res.exit_code != 0 and "never overwritten" in res.output, (cmd, res.output)
    assert (external / "ext.bin").read_bytes() == before


def test_a_rename_that_fails_undoes_the_ones_before(tmp_path, monkeypatch):
    (tmp_path / "a.txt").write_text("old a")
    import dirac_deploy.fileio as fileio

    real = fileio._publish

    def publish(tmp, path):
        if path.name == "b.txt":
            raise PermissionError(13, "Permission denied")
        real(tmp, path)

    monkeypatch.setattr(fileio, "_publish", publish)
    with pytest.raises(OutputPathError, match="nothing was changed"):
        write_all({tmp_path / "a.txt": lambda t: t.write_text("new a"), tmp_path / "b.txt": lambda t: t.write_text("b"),
                   tmp_path / "c.txt": lambda t: t.write_text("c")})
    assert (tmp_path / "a.txt").read_text() == "old a"
    assert sorted(os.listdir(tmp_path)) == ["a.txt"]


def test_a_transaction_publishes_everything_or_nothing(tmp_path):
    from dirac_deploy.fileio import atomic_write, transaction, write_with_dirs

    (tmp_path / "keep.txt").write_text("old")
    with pytest.raises(RuntimeError), transaction():
            write_all({tmp_path / "keep.txt": lambda t: t.write_text("new")})
            write_with_dirs({tmp_path / "sub" / "dir" / "f.txt": lambda t: t.write_text("f")})
            assert not (tmp_path / "sub" / "dir" / "f.txt").exists()  # staged, not published
            raise RuntimeError("the report could not be written")
    assert (tmp_path / "keep.txt").read_text() == "old" and sorted(os.listdir(tmp_path)) == ["keep.txt"]
    with transaction():
        atomic_write(tmp_path / "a.txt", lambda t: t.write_text("a"))
        write_with_dirs({tmp_path / "sub" / "b.txt": lambda t: t.write_text("b")})
    assert (tmp_path / "a.txt").read_text() == "a" and (tmp_path / "sub" / "b.txt").read_text() == "b"


def test_a_report_that_fails_takes_the_artifact_with_it(tmp_path, monkeypatch):
    from dirac_deploy.pipeline import FoldReport

    def full(self):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(FoldReport, "to_json", full)
    res = CliRunner().invoke(main, ["fold", str(data.embedded_checkpoint()), "-o", str(tmp_path / "p.pth"),
                                    "--json", str(tmp_path / "r.json")])
    assert res.exit_code == 2 and "No space left" in res.output and len(res.output.strip().splitlines()) == 1
    assert list(tmp_path.iterdir()) == []


@pytest.mark.hostile
def test_a_target_that_cannot_be_moved_aside_leaves_no_placeholder(tmp_path, monkeypatch):
    """Round four: a `.q.bin.*.tmp` stayed behind when the .bin could not be replaced. The backup placeholder
    `write_all` makes for each existing target is removed when moving the target aside fails."""
    from pathlib import Path

    a, b = tmp_path / "q.xml", tmp_path / "q.bin"
    a.write_text("old xml")
    b.write_text("old bin")
    real = os.replace

    def refuse_bin(src, dst):
        if Path(src) == b:
            raise PermissionError(13, "Permission denied")
        return real(src, dst)

    monkeypatch.setattr(os, "replace", refuse_bin)
    with pytest.raises(OutputPathError, match="cannot write"):
        write_all({a: lambda t: t.write_text("new xml"), b: lambda t: t.write_text("new bin")})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["q.bin", "q.xml"]
    assert a.read_text() == "old xml" and b.read_text() == "old bin"

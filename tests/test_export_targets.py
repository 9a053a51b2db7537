"""export.targets: the table of outputs `export` writes; a new one is one module and one row."""

from __future__ import annotations

import json

import pytest

from dirac_deploy.data import embedded_checkpoint
from dirac_deploy.errors import ExportError
from dirac_deploy.export import targets
from dirac_deploy.export.from_file import export_file, plan_export


@pytest.fixture
def toy_target(monkeypatch):
    """A target that writes the verified graph's node count as JSON, registered as docs/layout.md says."""
    monkeypatch.setattr(targets, "TARGETS", dict(targets.TARGETS))
    import dirac_deploy.export.from_file as from_file

    monkeypatch.setattr(from_file, "TARGETS", targets.TARGETS)

    def build(ctx, path):
        text = json.dumps({"nodes": len(ctx.result.model.graph.node), "classes": ctx.art.num_classes})
        return {path: lambda tmp: tmp.write_text(text)}

    targets.register(targets.ExportTarget("toy", "node count as JSON", targets.single_file, build))
    return "toy"


def test_a_toy_target_is_built_and_written_with_the_others(toy_target, tmp_path):
    report = export_file(embedded_checkpoint(), tmp_path / "m.onnx", outputs={toy_target: tmp_path / "m.json"})
    assert json.loads((tmp_path / "m.json").read_text())["classes"] == 10
    assert (tmp_path / "m.onnx").exists() and set(report.written) == {tmp_path / "m.onnx", tmp_path / "m.json"}


def test_outputs_are_planned_in_the_table_order_and_checked_before_anything_runs(tmp_path):
    plan = plan_export(embedded_checkpoint(), tmp_path / "m.onnx", unfolded=True, triton_repo=tmp_path / "repo")
    assert list(plan.outputs) == ["onnx", "unfolded", "triton"]
    assert plan.outputs["unfolded"] == tmp_path / "m.unfolded.onnx"
    with pytest.raises(ExportError, match="unknown export target"):
        plan_export(embedded_checkpoint(), outputs={"nope": tmp_path / "x"})
    with pytest.raises(ExportError, match="same file"):
        plan_export(embedded_checkpoint(), tmp_path / "m.onnx", outputs={"unfolded": tmp_path / "m.onnx"})
    assert not list(tmp_path.iterdir())  # planning writes nothing


def test_an_output_inside_the_triton_repository_is_refused_before_anything_runs(tmp_path):
    inside = tmp_path / "repo" / "digits" / "1" / "model.onnx"
    inside.parent.mkdir(parents=True)  # a repository a user made earlier
    with pytest.raises(ExportError, match=r"same file: .*model.onnx \(onnx and triton\)"):
        plan_export(embedded_checkpoint(), inside, triton_repo=tmp_path / "repo", name="digits")
    assert not [p for p in tmp_path.rglob("*") if p.is_file()]

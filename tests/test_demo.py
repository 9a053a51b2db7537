"""The embedded default: a really trained DiracNet in the original layout, folded without losing accuracy."""

from click.testing import CliRunner

from dirac_deploy import load_checkpoint
from dirac_deploy.cli import main
from dirac_deploy.data import embedded_checkpoint, load_holdout
from dirac_deploy.demo import demo_fold


def test_embedded_checkpoint_is_in_the_original_layout_and_trained():
    loaded = load_checkpoint(embedded_checkpoint())
    assert loaded.layout == "v2-flat-params"
    x, y = load_holdout()
    assert x.shape == (360, 3, 32, 32)
    acc = (loaded.model(x).argmax(1) == y).float().mean().item()
    assert acc > 0.95  # trained, not random (chance is 0.10)


def test_demo_fold_keeps_accuracy_identical(tmp_path):
    d = demo_fold(tmp_path)
    assert d.predictions_identical and d.accuracy_folded == d.accuracy_unfolded
    assert d.report.proof.ok and (tmp_path / "digits_plain.pth").exists()


def test_demo_command(tmp_path):
    res = CliRunner().invoke(main, ["demo", "--out", str(tmp_path)])
    assert res.exit_code == 0, res.output
    assert "held-out accuracy" in res.stdout and "predictions identical: yes" in res.stdout
    # no folder named like a package torch imports (a `triton/` in the working directory breaks torch.export)
    assert (tmp_path / "model_repository" / "digits_diracnet" / "config.pbtxt").is_file()
    assert not (tmp_path / "triton").exists()

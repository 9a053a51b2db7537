"""Every checkpoint layout, written by the independent reference, folds to a chain equal to the original forward."""

import io
from pathlib import Path

import pytest
import torch

from dirac_deploy import LoadOptions, fold_checkpoint, inspect_checkpoint, load_checkpoint, load_plain

import reference

TOL = 1e-4  # fp32 CPU: max abs error <= 1e-4 x max|logit|, identical top-1

# (dataset, depth, width, per-channel alpha/beta, check size)
ARCHS = [
    ("cifar", 10, 1.0, True, 32),
    ("cifar", 16, 0.5, False, 32),
    ("cifar", 22, 0.75, True, 16),
    ("imagenet", 18, 0.25, True, 64),
    ("imagenet", 34, 0.125, False, 64),
]


def _assert_equivalent(params, plain, size, batch):
    x = torch.randn(batch, 3, size, size, generator=torch.Generator().manual_seed(123))
    with torch.no_grad():
        ref = reference.forward(params, x)
        out = plain(x)
    assert out.shape == ref.shape
    assert (out - ref).abs().max() <= TOL * ref.abs().max()
    assert torch.equal(out.argmax(1), ref.argmax(1))


@pytest.mark.parametrize("layout", list(reference.LAYOUT_WRITERS))
@pytest.mark.parametrize("arch", ARCHS, ids=lambda a: f"{a[0]}{a[1]}-w{a[2]}-{'vec' if a[3] else 'scalar'}")
def test_every_layout_folds_to_the_original_forward(tmp_path, layout, arch):
    dataset, depth, width, per_channel, size = arch
    params = reference.define_params(dataset, depth, width, per_channel=per_channel, seed=depth)
    src = tmp_path / "ckpt.pth"
    torch.save(reference.LAYOUT_WRITERS[layout](params), src)

    report = fold_checkpoint(src, tmp_path / "plain.pth", LoadOptions(input_size=size))
    assert report.layout == layout
    assert report.spec.stem == dataset
    assert report.spec.num_classes == params["fc.weight"].shape[0]
    assert report.spec.per_channel_scales == (per_channel or layout == "v2-folded")
    assert report.proof.ok
    plain = load_plain(tmp_path / "plain.pth")
    assert not plain.training
    assert plain.meta["layout"] == layout and plain.meta["input_size"] == size
    kinds = {type(m).__name__ for m in plain.children()}
    assert kinds <= {"Conv2d", "ReLU", "MaxPool2d", "AdaptiveAvgPool2d", "Flatten", "Linear"}
    for batch in (1, 3):
        _assert_equivalent(params, plain, size, batch)


def test_full_size_imagenet_diracnet18_at_224(tmp_path):
    params = reference.define_params("imagenet", 18, 1.0, seed=7)
    torch.save(reference.as_params_stats(params), tmp_path / "d18.pth")
    report = fold_checkpoint(tmp_path / "d18.pth", tmp_path / "plain.pth")
    assert report.parameters == 11_523_368 and report.parameters_after == 11_511_784
    assert report.flops == report.flops_after == 3_589_611_520  # folding removes no conv work
    assert report.spec.input_size == 224
    _assert_equivalent(params, load_plain(tmp_path / "plain.pth"), 224, 2)


def test_legacy_non_zip_serialization_loads(tmp_path):
    params = reference.define_params("cifar", 10, seed=1)
    torch.save(reference.as_flat_params(params), tmp_path / "legacy.pt7", _use_new_zipfile_serialization=False)
    assert (tmp_path / "legacy.pt7").read_bytes()[:1] == b"\x80"  # a pickle, not a zip
    fold_checkpoint(tmp_path / "legacy.pt7", tmp_path / "plain.pth")
    _assert_equivalent(params, load_plain(tmp_path / "plain.pth"), 32, 2)


def test_wrappers_and_dataparallel_prefixes_are_stripped(tmp_path):
    params = reference.define_params("cifar", 10, seed=2)
    native = reference.as_native(params)
    wrapped = {"state_dict": {f"module.{k}": v for k, v in native.items()}, "epoch": 3}
    torch.save(wrapped, tmp_path / "wrapped.pth")
    loaded = load_checkpoint(tmp_path / "wrapped.pth")
    assert loaded.layout == "dirac-deploy"
    torch.save({"model": reference.as_folded(params)}, tmp_path / "folded.pth")
    assert load_checkpoint(tmp_path / "folded.pth").layout == "v2-folded"


def test_missing_eye_deltas_are_regenerated(tmp_path):
    params = reference.define_params("cifar", 16, 0.5, seed=3)
    no_eye = {k: v for k, v in params.items() if not k.startswith("eye")}
    torch.save({"params": no_eye, "epoch": 1, "optimizer": {}}, tmp_path / "noeye.pt7")
    report = fold_checkpoint(tmp_path / "noeye.pt7", tmp_path / "plain.pth")
    assert any("regenerated" in n for n in report.notes)
    _assert_equivalent(params, load_plain(tmp_path / "plain.pth"), 32, 2)


def test_stored_eye_is_used_over_regeneration(tmp_path):
    # A checkpoint's own delta wins: scale one stored eye and the loaded model must follow it.
    params = reference.define_params("cifar", 10, seed=4)
    key = reference.eye_name(params["group0.block1.conv"].shape)
    params[key] = params[key] * 0.5
    torch.save(reference.as_flat_params(params), tmp_path / "eye.pt7")
    fold_checkpoint(tmp_path / "eye.pt7", tmp_path / "plain.pth")
    _assert_equivalent(params, load_plain(tmp_path / "plain.pth"), 32, 2)


def test_bn_eps_option_reaches_the_fold(tmp_path):
    params = reference.define_params("cifar", 10, seed=5)
    for k in [k for k in params if k.endswith("running_var")]:
        params[k] = params[k] * 1e-3  # small variances make eps matter
    torch.save(reference.as_flat_params(params), tmp_path / "c.pt7")
    fold_checkpoint(tmp_path / "c.pt7", tmp_path / "a.pth")
    fold_checkpoint(tmp_path / "c.pt7", tmp_path / "b.pth", LoadOptions(bn_eps=1e-3))
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        a, b = load_plain(tmp_path / "a.pth")(x), load_plain(tmp_path / "b.pth")(x)
        ref = reference.forward(params, x)  # eps 1e-5
    assert (a - ref).abs().max() <= TOL * ref.abs().max()
    assert (b - ref).abs().max() > 10 * TOL * ref.abs().max()


def test_inspect_reports_without_writing(tmp_path):
    params = reference.define_params("imagenet", 18, 0.25, seed=6)
    buf = io.BytesIO()
    torch.save(reference.as_flat_params(params), buf)
    (tmp_path / "c.pt7").write_bytes(buf.getvalue())
    r = inspect_checkpoint(tmp_path / "c.pt7")
    assert r.layout == "v2-flat-params" and r.spec.widths == (16, 32, 64, 128)
    assert r.spec.convs_per_group == (4, 4, 4, 4) and r.spec.depth == 18
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.pt7"]


def test_tensors_saved_on_cuda_load_on_a_cpu_only_machine(tmp_path):
    """train.py saved CUDA tensors; a temporary location tagger makes torch.save record 'cuda:0' here too."""
    import torch.serialization as ts

    params = reference.define_params("cifar", 10, seed=13)
    before = list(ts._package_registry)
    ts.register_package(0, lambda _obj: "cuda:0", lambda _obj, _location: None)
    try:
        torch.save(reference.as_flat_params(params), tmp_path / "cuda.pt7")
    finally:
        ts._package_registry[:] = before
    if not torch.cuda.is_available():  # the file really needs map_location on a CPU-only machine
        with pytest.raises(RuntimeError, match="CUDA"):
            torch.load(tmp_path / "cuda.pt7", weights_only=True)
    fold_checkpoint(tmp_path / "cuda.pt7", tmp_path / "plain.pth")
    _assert_equivalent(params, load_plain(tmp_path / "plain.pth"), 32, 2)


def test_unknown_layout_message_is_short_and_points_to_fold_module(tmp_path):
    from click.testing import CliRunner

    from dirac_deploy.cli import main

    path = tmp_path / "odd.pth"
    torch.save({f"layer{i}.weight": torch.zeros(2) for i in range(200)}, path)
    res = CliRunner().invoke(main, ["fold", str(path), "-o", str(tmp_path / "p.pth")])
    assert res.exit_code == 1 and "unknown checkpoint layout" in res.output
    assert "fold_module" in res.output and "docs/formats.md" in res.output and len(res.output) < 700
    assert (Path(__file__).resolve().parents[1] / "docs" / "formats.md").is_file()

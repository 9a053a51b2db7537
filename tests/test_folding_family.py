"""Folding the rest of the skip-free family: DiracNet v1 (NCReLU; folding.chain's rules), scaled-identity /
variable-activation nets (folding.scaled_identity), fold_module on arbitrary modules, and their export and
serving. References are written independently in reference.py."""

import importlib.util
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from click.testing import CliRunner
from torch import nn
from torch.nn.utils import parametrize

from dirac_deploy import (
    DiracNet,
    DiracParametrization,
    EquivalenceError,
    LoadOptions,
    UnfoldableError,
    cifar_spec,
    fold_checkpoint,
    fold_module,
    load_plain,
)
from dirac_deploy.cli import main
from dirac_deploy.folding.chain import Op, canonicalize, to_plain
from dirac_deploy.models.dirac import DiracConv2d

import reference

TOL = 1e-4
ROOT = Path(__file__).resolve().parents[1]


def _close(out, ref):
    assert out.shape == ref.shape
    assert (out - ref).abs().max() <= TOL * ref.abs().max()
    assert torch.equal(out.argmax(1), ref.argmax(1))


# --- DiracNet v1 -------------------------------------------------------------------------------------------

V1_FORWARDS = {"params-stats": (reference.as_v1_params_stats, reference.forward_v1),
               "hkl-names": (reference.as_v1_hkl_naming, reference.forward_v1_released)}


@pytest.mark.parametrize("ncrelu", ["keep", "absorb"])
@pytest.mark.parametrize("naming", list(V1_FORWARDS))
@pytest.mark.parametrize("dataset,depth,width,size", [("cifar", 10, 1.0, 32), ("cifar", 16, 0.5, 32),
                                                      ("imagenet", 18, 0.25, 64)])
def test_v1_folds_to_the_forward_its_naming_implies(tmp_path, naming, ncrelu, dataset, depth, width, size):
    """Functional naming (alpha/beta): the v1 branch's forward, no final ReLU. Released naming
    (conv.gamma/conv.beta): the v1 notebook's forward of the released models, with one."""
    writer, forward = V1_FORWARDS[naming]
    params = reference.define_params_v1(dataset, depth, width, seed=depth)
    torch.save(writer(params), tmp_path / "v1.pt7")
    report = fold_checkpoint(tmp_path / "v1.pt7", tmp_path / "plain.pth", LoadOptions(input_size=size, ncrelu=ncrelu))
    assert report.layout == "v1-params-stats" and report.spec.version == 1 and report.proof.ok
    assert report.spec.final_relu == (naming == "hkl-names")
    plain = load_plain(tmp_path / "plain.pth")
    assert plain.meta["fold"]["ncrelu"] == ncrelu and plain.meta["architecture"]["final_relu"] == report.spec.final_relu
    kinds = [layer.kind for layer in plain.layers]
    blocks = sum(2 * n for n in reference.IMAGENET_BLOCKS[depth]) if dataset == "imagenet" else 3 * 2 * ((depth - 4) // 6)
    if ncrelu == "absorb":  # NCReLU survives only right after a max-pool (one per group, plus ImageNet's stem pool)
        pools = [i for i, k in enumerate(kinds) if k == "maxpool"]
        assert [i for i, k in enumerate(kinds) if k == "ncrelu"] == [i + 1 for i in pools]
    else:  # every block keeps its NCReLU, except where the CIFAR stem's ReLU makes it [relu(x), 0]
        assert kinds.count("ncrelu") == blocks - (dataset == "cifar")
    for batch in (1, 3):
        x = torch.randn(batch, 3, size, size)
        with torch.no_grad():
            _close(plain(x), forward(params, x))


def test_final_relu_can_be_overridden(tmp_path):
    params = reference.define_params_v1("cifar", 10, seed=8)
    torch.save(reference.as_v1_params_stats(params), tmp_path / "v1.pt7")
    report = fold_checkpoint(tmp_path / "v1.pt7", tmp_path / "plain.pth", LoadOptions(final_relu=True))
    assert report.spec.final_relu and report.proof.ok
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        _close(load_plain(tmp_path / "plain.pth")(x), reference.forward_v1_released(params, x))
    res = CliRunner().invoke(main, ["inspect", str(tmp_path / "v1.pt7"), "--final-relu"])
    assert res.exit_code == 0 and "a ReLU before the average pool" in res.stdout, res.output


def _count(sd):
    return sum(v.numel() for v in sd.values())


def test_default_v1_fold_keeps_the_authors_size_and_absorb_is_exact_but_larger(tmp_path):
    params = reference.define_params_v1("cifar", 16, seed=3)
    torch.save(reference.as_v1_hkl_naming(params), tmp_path / "v1.pt7")
    authors = _count(reference.notebook_fold_v1(params))  # the released folded layout's own tensors
    keep = fold_checkpoint(tmp_path / "v1.pt7", tmp_path / "keep.pth")
    absorb = fold_checkpoint(tmp_path / "v1.pt7", tmp_path / "absorb.pth", LoadOptions(ncrelu="absorb"))
    # keep: the authors' size, less the first block's weights that read the CIFAR stem ReLU's zero half
    first = params["group0.block0.conv"].shape
    assert keep.parameters_after == authors - first[0] * (first[1] // 2) * 9
    assert absorb.parameters_after > keep.parameters_after and absorb.flops_after > keep.flops_after
    assert keep.proof.ok and absorb.proof.ok
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        ref = reference.forward_v1_released(params, x)
        _close(load_plain(tmp_path / "keep.pth")(x), ref)
        _close(load_plain(tmp_path / "absorb.pth")(x), ref)


@pytest.mark.parametrize("prefix", ["", "features."], ids=["plain-keys", "features-prefix"])
@pytest.mark.parametrize("dataset,depth,width,size", [("imagenet", 18, 0.25, 64), ("cifar", 10, 1.0, 32)])
def test_released_folded_v1_loads_verifies_and_exports(tmp_path, prefix, dataset, depth, width, size):
    params = reference.define_params_v1(dataset, depth, width, seed=5)
    folded = reference.notebook_fold_v1(params, prefix)
    x = torch.randn(2, 3, size, size)
    with torch.no_grad():  # the transcription of the notebook's folded forward equals the original forward
        _close(reference.forward_v1_folded(folded, x), reference.forward_v1_released(params, x))
    torch.save(folded, tmp_path / "export.pth")
    report = fold_checkpoint(tmp_path / "export.pth", tmp_path / "plain.pth", LoadOptions(input_size=size))
    assert report.layout == "v1-folded" and report.folded_source and report.proof.ok and report.spec.version == 1
    if dataset == "imagenet":  # no ReLU before the first NCReLU: nothing to drop, the authors' size exactly
        assert report.parameters == report.parameters_after == _count(folded)
    with torch.no_grad():
        _close(load_plain(tmp_path / "plain.pth")(x), reference.forward_v1_folded(folded, x))
    res = CliRunner().invoke(main, ["export", str(tmp_path / "export.pth"), "--onnx", str(tmp_path / "m.onnx"),
                                    "--input-size", str(size)])
    assert res.exit_code == 0 and (tmp_path / "m.onnx").exists(), res.output
    res = CliRunner().invoke(main, ["inspect", str(tmp_path / "export.pth")])
    assert res.exit_code == 0 and "v1-folded" in res.stdout
    assert "BN eps" not in res.stdout and "scales" not in res.stdout  # a folded file says nothing about them


def test_inconsistent_v1_folded_file_names_what_is_wrong(tmp_path):
    folded = reference.notebook_fold_v1(reference.define_params_v1("imagenet", 18, 0.25, seed=1), "features.")
    folded["features.group1.block1.conv.weight"] = folded["features.group1.block1.conv.weight"][:, :16]
    torch.save(folded, tmp_path / "bad.pth")
    res = CliRunner().invoke(main, ["fold", str(tmp_path / "bad.pth"), "-o", str(tmp_path / "p.pth")])
    assert res.exit_code == 1 and "v1-folded" in res.stderr and "group1_block1_conv.weight" in res.stderr
    assert "[out, 2 x in, 3, 3]" in res.stderr or "needs" in res.stderr


def test_v1_missing_eyes_regenerate_the_tiled_delta(tmp_path):
    params = reference.define_params_v1("cifar", 10, seed=4)
    ckpt = reference.as_v1_params_stats(params)
    ckpt["stats"] = {k: v for k, v in ckpt["stats"].items() if not k.startswith("eye")}
    torch.save(ckpt, tmp_path / "v1.pt7")
    report = fold_checkpoint(tmp_path / "v1.pt7", tmp_path / "plain.pth")
    assert any("regenerated" in n for n in report.notes)
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        _close(load_plain(tmp_path / "plain.pth")(x), reference.forward_v1(params, x))


def _ops_conv(cin, cout, seed):
    g = torch.Generator().manual_seed(seed)
    return Op("conv", f"c{seed}_conv", dict(in_channels=cin, out_channels=cout, kernel_size=3, stride=1, padding=1),
              torch.randn(cout, cin, 3, 3, generator=g), torch.randn(cout, generator=g))


@torch.no_grad()
def test_ncrelu_absorbed_after_conv_and_kept_after_maxpool():
    a, b = _ops_conv(3, 4, 1), _ops_conv(8, 5, 2)
    x = torch.randn(2, 3, 8, 8)

    def direct(pool):
        o = F.conv2d(x, a.weight, a.bias, padding=1)
        if pool:
            o = F.max_pool2d(o, 2)
        o = torch.cat([o.clamp(min=0), o.clamp(max=0)], 1)
        return F.conv2d(o, b.weight, b.bias, padding=1)

    absorbed = canonicalize([a, Op("ncrelu"), b])
    assert [op.kind for op in absorbed] == ["conv", "relu", "conv"]
    assert absorbed[0].args["out_channels"] == 8
    assert torch.allclose(to_plain(absorbed)(x), direct(False), atol=1e-5)
    kept = canonicalize([a, Op("maxpool", "p", dict(kernel_size=2, stride=2, padding=0)), Op("ncrelu"), b])
    assert [op.kind for op in kept] == ["conv", "maxpool", "ncrelu", "conv"]
    assert torch.allclose(to_plain(kept)(x), direct(True), atol=1e-5)


# --- scaled-identity / variable-activation nets ------------------------------------------------------------

@pytest.mark.parametrize("per_channel,alpha", [(True, 1.0), (False, 1.0), (True, 0.7), (False, 0.25)])
def test_scaled_identity_nets_fold_exactly(tmp_path, per_channel, alpha):
    ckpt = reference.define_scaled_identity((8, 16, 16), (2, 1, 2), per_channel=per_channel, alpha=alpha, seed=3)
    torch.save(ckpt, tmp_path / "si.pth")
    report = fold_checkpoint(tmp_path / "si.pth", tmp_path / "plain.pth")
    assert report.layout == "scaled-identity" and report.proof.ok
    plain = load_plain(tmp_path / "plain.pth")
    kinds = {layer.kind for layer in plain.layers}
    if alpha == 1.0:
        assert "leaky_relu" not in kinds and not report.notes
    else:
        assert "relu" not in kinds and "leaky_relu" in kinds
        assert any("LeakyReLU" in n and "not conv-ReLU" in n for n in report.notes)
        slopes = {layer.args["negative_slope"] for layer in plain.layers if layer.kind == "leaky_relu"}
        assert slopes and all(slope == pytest.approx(1 - alpha) for slope in slopes)
    assert sum(k == "conv" for k in (layer.kind for layer in plain.layers)) == 1 + 2 + 5  # stem, transitions, blocks
    for batch in (1, 3):
        x = torch.randn(batch, 3, 32, 32)
        with torch.no_grad():
            _close(plain(x), reference.scaled_identity_forward(ckpt, x))


@pytest.mark.parametrize("shortcut,reason", [("preact", "pre-activation skip"), ("two_conv", "shortcut of length 2")])
def test_unfoldable_blocks_are_refused_naming_block_and_reason(tmp_path, shortcut, reason):
    torch.save(reference.define_scaled_identity((8, 16), (1, 1), shortcut=shortcut), tmp_path / "r.pth")
    with pytest.raises(UnfoldableError, match=rf"group0\.blocks\.0.*{reason}"):
        fold_checkpoint(tmp_path / "r.pth", tmp_path / "plain.pth")
    res = CliRunner().invoke(main, ["fold", str(tmp_path / "r.pth"), "-o", str(tmp_path / "plain.pth")])
    assert res.exit_code == 1 and "group0.blocks.0" in res.stderr and len(res.stderr.strip().splitlines()) == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r.pth"]


@pytest.mark.parametrize("shortcut", ["scaled", "preact", "two_conv"])
def test_scaled_identity_module_loads_every_form_and_matches_the_reference(tmp_path, shortcut):
    """The reference model definition computes each documented block form (even those that cannot fold)."""
    from dirac_deploy.checkpoint import load_checkpoint

    ckpt = reference.define_scaled_identity((8, 16), (2, 1), shortcut=shortcut, alpha=0.8, seed=5)
    torch.save(ckpt, tmp_path / "si.pth")
    model = load_checkpoint(tmp_path / "si.pth").model
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.allclose(model(x), reference.scaled_identity_forward(ckpt, x), rtol=1e-5, atol=1e-5)


def test_checkpoint_payload_round_trips_a_trained_module(tmp_path):
    from dirac_deploy import ScaledIdentityNet, ScaledIdentitySpec
    from dirac_deploy.checkpoint.formats.scaled_identity import checkpoint_payload

    model = _randomize_bn(ScaledIdentityNet(ScaledIdentitySpec((8, 16), (1, 2), 5, per_channel_shortcut=False))).eval()
    torch.save(checkpoint_payload(model), tmp_path / "mine.pth")
    report = fold_checkpoint(tmp_path / "mine.pth", tmp_path / "plain.pth")
    assert report.spec == model.spec and report.proof.ok
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        _close(load_plain(tmp_path / "plain.pth")(x), model(x))


# --- fold_module -------------------------------------------------------------------------------------------

def _randomize_bn(model):
    g = torch.Generator().manual_seed(7)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.copy_(torch.randn(m.num_features, generator=g))
            m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.3)
            m.weight.data.copy_(torch.rand(m.num_features, generator=g) + 0.5)
    return model


def test_fold_module_on_a_mixed_model():
    pc = nn.Conv2d(8, 8, 3, padding=1)
    parametrize.register_parametrization(pc, "weight", DiracParametrization(8, 8, 3, alpha=0.9, beta=0.3))
    other = nn.Conv2d(8, 8, 1)
    parametrize.register_parametrization(other, "weight", nn.Identity())  # not Dirac: must stay
    model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), DiracConv2d(8, 8), nn.BatchNorm2d(8), nn.ReLU(),
                          pc, nn.BatchNorm2d(8), other, nn.Sequential(DiracConv2d(8, 8), nn.ReLU()),
                          nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 4))
    model = _randomize_bn(model).eval()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    result = fold_module(model, torch.zeros(1, 3, 16, 16))
    assert result.replaced == ["2+3", "5+6", "8.0"] and result.proof.ok
    m = result.module
    assert isinstance(m[2], nn.Conv2d) and isinstance(m[3], nn.Identity) and isinstance(m[6], nn.Identity)
    assert not parametrize.is_parametrized(m[5]) and parametrize.is_parametrized(m[7])
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())  # original untouched
    x = torch.randn(3, 3, 16, 16)
    with torch.no_grad():
        assert torch.allclose(m(x), model(x), atol=1e-5)
    with pytest.raises(EquivalenceError, match="train mode"):
        fold_module(model.train(), torch.zeros(1, 3, 16, 16))


def test_timm_style_reparameterize_uses_fuse_hooks():
    """timm.utils.reparameterize_model's documented walk: deep copy, replace any child that has `fuse()`."""
    import copy

    def reparameterize_model(model):
        model = copy.deepcopy(model)

        def walk(m):
            for name, child in m.named_children():
                if hasattr(child, "fuse"):
                    setattr(m, name, child.fuse())
                else:
                    walk(child)
        walk(model)
        return model

    net = _randomize_bn(DiracNet(cifar_spec(10))).eval()
    fused = reparameterize_model(net)
    assert not any(isinstance(m, (DiracConv2d, nn.BatchNorm2d)) for m in fused.group0.modules())
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.allclose(fused(x), net(x), rtol=1e-4, atol=1e-4)


# --- export and serve for the family ----------------------------------------------------------------------

@pytest.fixture(scope="module")
def family_ckpts(tmp_path_factory):
    d = tmp_path_factory.mktemp("family")
    v1 = reference.define_params_v1("cifar", 10, seed=8)
    torch.save(reference.as_v1_params_stats(v1), d / "v1.pt7")
    si = reference.define_scaled_identity((8, 16), (2, 2), alpha=0.6, seed=8)
    torch.save(si, d / "si.pth")
    return d, v1, si


def test_family_exports_through_the_cli(family_ckpts, tmp_path):
    d, _, _ = family_ckpts
    for name, ops in (("v1.pt7", ("Max", "Concat")), ("si.pth", ("LeakyRelu",))):
        res = CliRunner().invoke(main, ["export", str(d / name), "--onnx", str(tmp_path / f"{name}.onnx")])
        assert res.exit_code == 0, res.output
        assert all(op in res.stdout for op in ops) and "audit" in res.stdout


def test_family_serves_through_tritonclient(family_ckpts):
    import tritonclient.http as triton

    from serving import running_server

    d, v1, si = family_ckpts
    x = np.random.default_rng(3).standard_normal((2, 3, 32, 32)).astype(np.float32)
    with running_server(f"v1={d / 'v1.pt7'}", f"si={d / 'si.pth'}") as (url, _):
        client = triton.InferenceServerClient(url.removeprefix("http://"))
        for name, ref in (("v1", reference.forward_v1(v1, torch.from_numpy(x))),
                          ("si", reference.scaled_identity_forward(si, torch.from_numpy(x)))):
            inp = triton.InferInput("input", list(x.shape), "FP32")
            inp.set_data_from_numpy(x)
            _close(torch.tensor(client.infer(name, [inp]).as_numpy("logits")), ref.detach())


def test_hkl_converter_split_produces_a_foldable_v1_checkpoint(tmp_path):
    spec = importlib.util.spec_from_file_location("hkl_to_pth", ROOT / "converters" / "hkl_to_pth.py")
    conv = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(conv)
    params = reference.define_params_v1("cifar", 10, seed=2)
    hkl_like = reference.as_v1_hkl_naming(params)
    flat = {k: v.numpy() for part in ("params", "stats") for k, v in hkl_like[part].items()}
    torch.save(conv.split_params_stats(flat), tmp_path / "converted.pth")
    fold_checkpoint(tmp_path / "converted.pth", tmp_path / "plain.pth")
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        _close(load_plain(tmp_path / "plain.pth")(x), reference.forward_v1_released(params, x))
    proc = subprocess.run([sys.executable, str(ROOT / "converters" / "hkl_to_pth.py"), "a.hkl", "a.hkl"],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1 and "error" in proc.stderr


def test_hkl_converter_end_to_end_on_a_real_hdf5_file(tmp_path):
    hickle = pytest.importorskip("hickle", reason="hickle (test extra) converts the released v1 .hkl files")
    params = reference.define_params_v1("cifar", 10, seed=6)
    ckpt = reference.as_v1_hkl_naming(params)
    flat = {k: v.numpy() for part in ("params", "stats") for k, v in ckpt[part].items()}
    hickle.dump(flat, str(tmp_path / "diracnet-v1.hkl"), mode="w")
    res = CliRunner().invoke(main, ["fold", str(tmp_path / "diracnet-v1.hkl"), "-o", str(tmp_path / "p.pth")])
    assert res.exit_code == 1 and "converters/hkl_to_pth.py" in res.stderr  # the loader points at the converter
    proc = subprocess.run([sys.executable, str(ROOT / "converters" / "hkl_to_pth.py"), str(tmp_path / "diracnet-v1.hkl"),
                           str(tmp_path / "v1.pth")], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    report = fold_checkpoint(tmp_path / "v1.pth", tmp_path / "plain.pth")
    assert report.layout == "v1-params-stats"
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        _close(load_plain(tmp_path / "plain.pth")(x), reference.forward_v1_released(params, x))


def test_released_v1_18_075_folds_to_the_notebooks_parameter_count(tmp_path):
    """The v1 notebook: DiracNet-18-0.75, "12.8M parameters", Total parameters: 12753640 (its folded file)."""
    params = reference.define_params_v1("imagenet", 18, 0.75, seed=0)
    torch.save(reference.as_v1_hkl_naming(params), tmp_path / "v1.pt7")
    report = fold_checkpoint(tmp_path / "v1.pt7", None, LoadOptions(input_size=64))
    assert report.parameters_after == 12_753_640 and report.proof.ok


def test_v1_fold_note_prints_its_brackets(tmp_path):
    """The note on the CIFAR stem's NCReLU names `[relu(x), 0]`; the CLI prints it as text, not markup."""
    from click.testing import CliRunner

    from dirac_deploy.cli import main

    torch.save(reference.as_v1_hkl_naming(reference.define_params_v1("cifar", 16, seed=3)), tmp_path / "v1.pt7")
    res = CliRunner().invoke(main, ["fold", str(tmp_path / "v1.pt7"), "-o", str(tmp_path / "p.pth")],
                             env={"COLUMNS": "400"})
    assert res.exit_code == 0, res.output
    assert "[relu(x), 0]" in res.output

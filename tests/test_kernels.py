"""The pure fold math against PyTorch's own implementations of the same operations."""

import copy

import pytest
import torch
import torch.nn.functional as F
from torch.nn.utils.fusion import fuse_conv_bn_weights

from dirac_deploy import DiracNet, cifar_spec, fold
from dirac_deploy.errors import EquivalenceError
from dirac_deploy.kernels import dirac_delta, dirac_weight, fold_dirac_conv_bn, fuse_bn, normalize_filters


@pytest.mark.parametrize("shape", [(8, 8, 3, 3), (16, 8, 3, 3), (8, 16, 3, 3), (4, 4, 5, 5), (6, 3, 1, 1)])
def test_dirac_delta_matches_torch_dirac_init(shape):
    expected = torch.empty(shape)
    torch.nn.init.dirac_(expected)
    assert torch.equal(dirac_delta(shape[0], shape[1], shape[2]), expected)


def test_normalize_matches_f_normalize_including_zero_filters():
    w = torch.randn(5, 4, 3, 3, dtype=torch.float64)
    w[2] = 0.0
    expected = F.normalize(w.view(5, -1)).view_as(w)
    assert torch.allclose(normalize_filters(w), expected, rtol=0, atol=1e-15)


def test_fuse_bn_matches_torch_fusion():
    g = torch.Generator().manual_seed(1)
    w, b = torch.randn(6, 3, 3, 3, generator=g), torch.randn(6, generator=g)
    rm, rv = torch.randn(6, generator=g), torch.rand(6, generator=g) + 0.5
    gamma, beta = torch.randn(6, generator=g), torch.randn(6, generator=g)
    ours = fuse_bn(w, b, rm, rv, gamma, beta, eps=1e-3)
    theirs = fuse_conv_bn_weights(w, b, rm, rv, 1e-3, gamma, beta)
    assert torch.allclose(ours[0], theirs[0], atol=1e-6) and torch.allclose(ours[1], theirs[1], atol=1e-6)


def test_scalar_and_vector_scales_agree_when_equal():
    w = torch.randn(4, 4, 3, 3)
    delta = dirac_delta(4, 4, 3)
    a = dirac_weight(w, torch.tensor([0.7]), torch.tensor([0.2]), delta)
    b = dirac_weight(w, torch.full((4,), 0.7), torch.full((4,), 0.2), delta)
    assert torch.equal(a, b)


def test_fold_dirac_conv_bn_equals_conv_then_bn():
    g = torch.Generator().manual_seed(2)
    w = torch.randn(8, 4, 3, 3, generator=g)
    alpha, beta = torch.rand(8, generator=g) + 0.5, torch.rand(8, generator=g)
    delta = dirac_delta(8, 4, 3)
    bn = {"running_mean": torch.randn(8, generator=g), "running_var": torch.rand(8, generator=g) + 0.1,
          "weight": torch.randn(8, generator=g), "bias": torch.randn(8, generator=g)}
    x = torch.randn(2, 4, 9, 9, generator=g, dtype=torch.float64)
    w64, a64, b64 = w.double(), alpha.double(), beta.double()
    w_hat = b64.view(-1, 1, 1, 1) * F.normalize(w64.view(8, -1)).view_as(w64) + a64.view(-1, 1, 1, 1) * delta.double()
    ref = F.batch_norm(F.conv2d(x, w_hat, padding=1), bn["running_mean"].double(),
                       bn["running_var"].double(), bn["weight"].double(), bn["bias"].double(), eps=1e-5)
    wf, bf = fold_dirac_conv_bn(w.double(), alpha, beta, delta, bn, eps=1e-5)
    assert torch.allclose(F.conv2d(x, wf, bf, padding=1), ref, rtol=1e-10, atol=1e-10)


def _trained_looking(model):
    g = torch.Generator().manual_seed(3)
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.copy_(torch.randn(m.num_features, generator=g))
            m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.2)
    return model


def test_fold_does_not_mutate_and_refuses_train_mode():
    model = _trained_looking(DiracNet(cifar_spec(10)))
    with pytest.raises(EquivalenceError, match="train mode"):
        fold(model)
    model.eval()
    before = copy.deepcopy(model.state_dict())
    result = fold(model)
    after = model.state_dict()
    assert before.keys() == after.keys() and all(torch.equal(before[k], after[k]) for k in before)
    assert result.proof.ok and not result.plain.training


def test_dirac_conv_fuse_hook_returns_equivalent_conv():
    model = DiracNet(cifar_spec(10)).eval()
    conv = model.group1.block0.conv
    x = torch.randn(2, conv.in_channels, 8, 8)
    fused = conv.fuse()
    assert isinstance(fused, torch.nn.Conv2d) and fused.bias is None
    assert torch.allclose(fused(x), conv(x), atol=1e-5)

"""fold_module on the original repository's diracconv layers (1-D, 2-D, 3-D; both forms; bias and BN), and
refusals: a fold that replaced nothing is never passed off as proven."""

import pytest
import torch
from torch import nn

from dirac_deploy import UnfoldableError, fold_module
from dirac_deploy.errors import UnknownLayoutError
from dirac_deploy.pipeline import fold_checkpoint

import reference

CONVS = {1: reference.DiracConv1d, 2: reference.DiracConv2d, 3: reference.DiracConv3d}
BNS = {1: nn.BatchNorm1d, 2: nn.BatchNorm2d, 3: nn.BatchNorm3d}


def _trained_looking(model, seed=0):
    """Scales and BN statistics away from their init, so a fold that ignored any of them would show."""
    g = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if hasattr(m, "alpha") and hasattr(m, "delta"):
            m.alpha.data.uniform_(0.5, 1.5, generator=g)
            m.beta.data.uniform_(0.2, 0.8, generator=g)
            if m.bias is not None:
                m.bias.data.uniform_(-0.3, 0.3, generator=g)
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.running_mean.uniform_(-0.5, 0.5, generator=g)
            m.running_var.uniform_(0.3, 2.0, generator=g)
            m.weight.data.uniform_(0.5, 1.5, generator=g)
            m.bias.data.uniform_(-0.2, 0.2, generator=g)
    return model.eval()


def _net(dim, bias, with_bn, v1_raw):
    conv = CONVS[dim]
    layers = [conv(4, 4, 3, padding=1, bias=bias, v1_raw=v1_raw)]
    if with_bn:
        layers.append(BNS[dim](4))
    layers += [nn.ReLU(), conv(4, 8, 3, padding=1, bias=bias, v1_raw=v1_raw)]
    if with_bn:
        layers.append(BNS[dim](8))
    layers.append(nn.ReLU())
    return _trained_looking(nn.Sequential(*layers))


@pytest.mark.parametrize("dim", [1, 2, 3])
@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("with_bn", [True, False])
@pytest.mark.parametrize("v1_raw", [False, True], ids=["master", "v1-raw"])
def test_original_diracconv_layers_fold_and_match(dim, bias, with_bn, v1_raw):
    model = _net(dim, bias, with_bn, v1_raw)
    example = torch.zeros(1, 4, *([9] * dim))
    result = fold_module(model, example)
    expected = ["0+1", "3+4"] if with_bn else ["0", "2"]
    assert result.replaced == expected and result.proof.ok and not result.left
    convs = [m for m in result.module.modules() if isinstance(m, (nn.Conv1d, nn.Conv2d, nn.Conv3d))]
    assert len(convs) == 2 and all(type(c) in (nn.Conv1d, nn.Conv2d, nn.Conv3d) for c in convs)
    assert not any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in result.module.modules())
    x = torch.randn(3, 4, *([9] * dim))
    with torch.no_grad():
        ref, got = model(x), result.module(x)
    assert torch.allclose(got, ref, rtol=1e-4, atol=1e-4 * float(ref.abs().max()))


def test_a_copy_of_the_class_in_user_code_is_found_by_its_attributes():
    class MyDirac(nn.Conv2d):  # not the reference class: only the attributes say what it is
        def __init__(self, c):
            super().__init__(c, c, 3, padding=1, bias=False)
            self.alpha = nn.Parameter(torch.full((c,), 0.7))
            self.beta = nn.Parameter(torch.full((c,), 0.4))
            self.register_buffer("delta", torch.nn.init.dirac_(torch.empty_like(self.weight)))

        def forward(self, x):
            w = self.alpha.view(-1, 1, 1, 1) * self.delta + self.beta.view(-1, 1, 1, 1) * nn.functional.normalize(
                self.weight.view(self.weight.shape[0], -1)).view_as(self.weight)
            return nn.functional.conv2d(x, w, None, 1, 1)

    model = _trained_looking(nn.Sequential(MyDirac(6), nn.BatchNorm2d(6), nn.ReLU()))
    result = fold_module(model, torch.zeros(1, 6, 8, 8))
    assert result.replaced == ["0+1"] and result.proof.ok


def test_a_layer_with_dirac_attributes_but_another_forward_is_left_named():
    class Odd(reference.DiracConv2d):
        def forward(self, x):  # squares the delta term: neither known form
            return nn.functional.conv2d(x, self.transform_weight() ** 2, self.bias, 1, self.padding)

    model = _trained_looking(nn.Sequential(Odd(4, 4, 3, padding=1), nn.ReLU(),
                                           reference.DiracConv2d(4, 4, 3, padding=1), nn.BatchNorm2d(4)))
    result = fold_module(model, torch.zeros(1, 4, 8, 8))
    assert result.replaced == ["2+3"] and result.partial
    assert result.left[0][0] == "0" and "matches neither" in result.left[0][1]
    assert "left 0 (" in result.describe()


def test_nothing_to_fold_is_refused_not_proven():
    model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU()).eval()
    with pytest.raises(UnfoldableError, match="nothing to fold in Sequential.*no fold to prove"):
        fold_module(model, torch.zeros(1, 3, 8, 8))


def test_fold_module_cli_path_refuses_a_bare_user_state_dict_plainly(tmp_path):
    model = _net(2, True, True, False)
    torch.save(model.state_dict(), tmp_path / "mine.pth")
    with pytest.raises(UnknownLayoutError, match="diracconv layers .*fold_module"):
        fold_checkpoint(tmp_path / "mine.pth", tmp_path / "plain.pth")
    assert not (tmp_path / "plain.pth").exists()

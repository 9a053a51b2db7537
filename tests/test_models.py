"""Model definitions against published counts and the independent functional reference."""

import pytest
import torch

from dirac_deploy import DiracNet, cifar_spec, imagenet_spec, resnet
from dirac_deploy.checkpoint.formats._original_v2 import to_native
from dirac_deploy.folding.chain import plain_layers
from dirac_deploy.models.plain import PlainNet
from dirac_deploy.summary import count_parameters

import reference


@pytest.mark.parametrize("depth,unfolded,folded", [(18, 11_523_368, 11_511_784), (34, 21_638_952, 21_616_232)])
def test_diracnet_parameter_counts_match_the_original_notebook(depth, unfolded, folded):
    # "Total parameters: 11523368 / 21638952" is what the original export notebook prints (per-channel
    # alpha/beta); the folded count is every conv with a bias, without alpha, beta and BN affine.
    spec = imagenet_spec(depth)
    assert count_parameters(DiracNet(spec)) == unfolded
    assert count_parameters(PlainNet(plain_layers(spec))) == folded


@pytest.mark.parametrize("depth,params,keys", [(18, 11_689_512, 122), (34, 21_797_672, 218)])
def test_resnet_baseline_matches_torchvision_counts(depth, params, keys):
    model = resnet(depth)
    assert count_parameters(model) == params
    assert len(model.state_dict()) == keys
    assert "layer2.0.downsample.1.running_var" in model.state_dict()
    assert model(torch.randn(1, 3, 64, 64)).shape == (1, 1000)


@pytest.mark.parametrize("dataset,depth,width,per_channel", [
    ("cifar", 10, 1.0, True), ("cifar", 16, 0.5, False), ("imagenet", 18, 0.25, True), ("imagenet", 34, 0.125, False)])
def test_module_forward_equals_original_functional_forward(dataset, depth, width, per_channel):
    p = reference.define_params(dataset, depth, width, per_channel=per_channel, seed=depth)
    spec = (imagenet_spec(depth, width, per_channel_scales=per_channel) if dataset == "imagenet"
            else cifar_spec(depth, width, per_channel_scales=per_channel))
    model = DiracNet(spec).eval()
    sd, _ = to_native(p)
    sd.update({k: v for k, v in model.state_dict().items() if k.endswith("num_batches_tracked")})
    model.load_state_dict(sd)
    x = torch.randn(2, 3, 64 if dataset == "imagenet" else 32, 64 if dataset == "imagenet" else 32)
    with torch.no_grad():
        assert torch.allclose(model(x), reference.forward(p, x), rtol=1e-5, atol=1e-5)

"""folding.fold: the fold and its proof run on the device the model is on (marker gpu for CUDA)."""

import pytest
import torch

from dirac_deploy.bench.models import calibrate_bn
from dirac_deploy.folding.fold import fold
from dirac_deploy.models.dirac import DiracNet
from dirac_deploy.spec import imagenet_spec


@pytest.mark.parametrize("device", ["cpu", pytest.param("cuda", marks=pytest.mark.gpu)])
def test_fold_proves_the_chain_on_the_model_s_own_device(device):
    torch.manual_seed(0)
    model = calibrate_bn(DiracNet(imagenet_spec(18, 0.25)), (3, 64, 64)).to(device)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    result = fold(model, input_size=64)
    assert result.proof.ok and next(result.plain.parameters()).device.type == device
    x = torch.randn(2, 3, 64, 64, device=device)
    with torch.no_grad():
        ref, out = model(x), result.plain(x)
    assert (out - ref).abs().max() <= 1e-4 * ref.abs().max()
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())  # the input model is untouched

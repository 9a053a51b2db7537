"""quantize.projection: the projection form and activation equalization compute the chain's function in float
(<= 1e-5 relative), on a chain that looks trained (per-channel scales over 100x, a widening conv, a dead
channel), and the diagonal conv holds exactly the folded kernel's centre diagonal."""

import numpy as np
import torch
from torch import nn

from dirac_deploy.quantize.projection import Projection, equalized, projection_module


def _trained_like_chain() -> nn.Sequential:
    torch.manual_seed(0)
    chain = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(3, 2, 1),
                          nn.Conv2d(8, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 16, 3, padding=1), nn.ReLU(),
                          nn.Conv2d(16, 16, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                          nn.Linear(16, 5)).eval()
    with torch.no_grad():
        for m in chain:
            if isinstance(m, nn.Conv2d):
                o, i = m.weight.shape[:2]
                scale = torch.logspace(-1, 1, o)[torch.randperm(o)]  # 100x between channels
                m.weight *= scale.view(-1, 1, 1, 1)
                idx = torch.arange(min(o, i))
                if i > 3:
                    m.weight[idx, idx, 1, 1] += 2 * scale[idx]  # a dominant identity, as a fold leaves it
        chain[3].bias[0] = -1e3  # channel 0 of the second conv never fires: a dead channel
    return chain


def test_projection_form_and_equalization_are_the_chain_in_float():
    chain = _trained_like_chain()
    x = torch.randn(6, 3, 16, 16)
    projected = projection_module(chain)
    kinds = [type(m) for m in projected]
    assert kinds.count(Projection) == 3 and isinstance(projected[0], nn.Conv2d)  # the stem stays a conv
    widening = projected[5]
    assert widening.diagonal.weight.shape == (16, 8, 1, 1)
    folded = chain[5].weight.detach()
    idx = torch.arange(8)
    assert torch.equal(widening.diagonal.weight[idx, idx, 0, 0], folded[idx, idx, 1, 1])
    assert torch.count_nonzero(widening.diagonal.weight) <= 8 and torch.all(widening.rest.weight[idx, idx, 1, 1] == 0)
    balanced = equalized(projected, np.random.default_rng(0).standard_normal((8, 3, 16, 16)).astype(np.float32))
    with torch.no_grad():
        ref = chain(x).double()
        for module in (projected, balanced):
            assert float((module(x).double() - ref).abs().max() / ref.abs().max()) <= 1e-5
        # equalization changed the weights (the test would pass vacuously otherwise); the dead channel's output
        # scale stays 1 (its bias is divided by nothing), the others' biases moved
        assert not torch.allclose(balanced[3].rest.weight, projected[3].rest.weight)
        assert balanced[3].rest.bias[0] == projected[3].rest.bias[0] == -1e3
        assert not torch.allclose(balanced[3].rest.bias[1:], projected[3].rest.bias[1:])

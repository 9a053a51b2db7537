"""The projection form of a folded chain, and activation equalization: the same function in float, with no scale
carried through the residual blocks (the trained-like int8 issue; measured by `benchmarks/projection_probe.py`).

Projection form. A folded conv that carries the identity has W = D delta + R, D = diag(d) its centre diagonal
(rectangular for a widening conv: rows past the input channels have none) and R the rest. It is written as

    z = conv3x3(a, R) + conv1x1(a, D)

exact in float; per-channel int8 keeps D exactly (one entry per row), and R gets scales of its own. Unlike the
unit-residual form (`rescale`), no per-channel scale is forced onto the next block, so the scales are free.

Activation equalization. A positive per-channel scale commutes with ReLU and max pooling, so for consecutive
weighted layers k, k+1 and any s > 0,

    layer_{k+1}(relu(layer_k(x))) = layer'_{k+1}(relu(layer'_k(x))),
    W'_k[c, ...] = W_k[c, ...] / s_c, b'_k[c] = b_k[c] / s_c,  W'_{k+1}[:, c, ...] = W_{k+1}[:, c, ...] * s_c,

here with s_c = (m_c / median(m))^alpha, m_c channel c's largest value after layer k's ReLU on calibration
images: per-tensor int8 activations then see channels of like range (alpha 1: equal peaks).
"""

from __future__ import annotations

import copy

import numpy as np
import torch
from torch import nn

ALPHA = 1.0  # measured best logit SQNR on the trained-like DiracNet-18 (21.7 dB; 0.5 gave 20.1 dB)


class Projection(nn.Module):
    """conv3x3(x, R) + conv1x1(x, D) (module docstring)."""

    rest: nn.Conv2d
    diagonal: nn.Conv2d

    def __init__(self, rest: nn.Conv2d, diagonal: nn.Conv2d):
        super().__init__()
        self.rest, self.diagonal = rest, diagonal

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.rest(x) + self.diagonal(x)


def _carries_identity(m: nn.Conv2d, first: bool) -> bool:
    o, i, kh, kw = m.weight.shape
    return (not first and o >= i and (kh, kw) == (3, 3) and m.stride == (1, 1) and m.padding == (1, 1)
            and m.groups == 1 and m.dilation == (1, 1))


def projection_module(chain: nn.Sequential) -> nn.Sequential:
    """`chain` (a PlainNet) with each identity-carrying conv (3x3, stride 1, out >= in, not the stem) as a
    `Projection`; every other layer as it is."""
    layers: list[nn.Module] = []
    first = True
    for m in chain.children():
        if isinstance(m, nn.Conv2d) and _carries_identity(m, first):
            w = m.weight.detach().clone()
            idx = torch.arange(min(w.shape[:2]))
            d = w[idx, idx, 1, 1].clone()
            w[idx, idx, 1, 1] = 0
            rest = copy.deepcopy(m)
            rest.weight.data = w
            diagonal = nn.Conv2d(w.shape[1], w.shape[0], 1, bias=False)
            diagonal.weight.data = torch.zeros(w.shape[0], w.shape[1], 1, 1)
            diagonal.weight.data[idx, idx, 0, 0] = d
            layers.append(Projection(rest, diagonal))
        else:
            layers.append(copy.deepcopy(m))
        first = first and not isinstance(m, nn.Conv2d)
    return nn.Sequential(*layers).eval()


def _convs(m: nn.Module) -> list[nn.Conv2d]:
    if isinstance(m, Projection):
        return [m.rest, m.diagonal]
    assert isinstance(m, nn.Conv2d)
    return [m]


def equalized(module: nn.Sequential, calib: np.ndarray, alpha: float = ALPHA) -> nn.Sequential:
    """A copy of `module` (convs, `Projection`s, ReLU, pooling, flatten, a final linear) with activation
    equalization between each pair of consecutive weighted layers (module docstring), the peaks measured on
    `calib`. Layers between the pair other than ReLU, pooling and flatten are not expected (a PlainNet has none)."""
    module = copy.deepcopy(module)
    layers = list(module.children())
    weighted = [i for i, m in enumerate(layers) if isinstance(m, (nn.Conv2d, Projection, nn.Linear))]
    peak: dict[int, torch.Tensor] = {}

    def record(i: int):
        def hook(_m, _inputs, out):
            if out.dim() == 4:
                peak[i] = torch.relu(out).amax(dim=(0, 2, 3))
        return hook

    handles = [layers[i].register_forward_hook(record(i)) for i in weighted]
    with torch.no_grad():
        module(torch.from_numpy(np.ascontiguousarray(calib, dtype=np.float32)))
    for h in handles:
        h.remove()
    with torch.no_grad():
        for k, nxt in zip(weighted, weighted[1:]):
            if k not in peak:
                continue
            m = peak[k].double()
            alive = m > 0  # a channel never positive on `calib` keeps its weights: 0 ** alpha would blow them up
            if not alive.any():
                continue
            s = torch.where(alive, (m / m[alive].median()) ** alpha, torch.ones_like(m)).float()
            for c in _convs(layers[k]):
                c.weight /= s.view(-1, 1, 1, 1)
                if c.bias is not None:
                    c.bias /= s
            after = layers[nxt]
            if isinstance(after, nn.Linear):
                after.weight *= s.view(1, -1)
            else:
                for c in _convs(layers[nxt]):
                    c.weight *= s.view(1, -1, 1, 1)
    return module

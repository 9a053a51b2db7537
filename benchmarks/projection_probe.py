"""Measure before building (the trained-like int8 issue): how much of the int8 loss on a trained-like DiracNet the
projection form and activation equalization win back, on the edge stacks' PT2E path, simulated in PyTorch.

Forms of the folded chain, all exact in float (printed: max |logit| error relative to the chain):
- naive: the chain as it is;
- identity: the shipped unit-residual form (`quantize.edge.unit_residual_module`);
- projection: z = conv3x3(a, R) + conv1x1(a, D), D = the centre diagonal (rectangular for a widening conv),
  R = W - D delta: no carried scale, D exact in per-channel int8;
- projection + equalization (alpha): each conv's output channel c divided by s_c = (m_c / median m)^alpha, m_c its
  max after ReLU on calibration images, and the next layer's input channel c multiplied by s_c (positive scales
  commute with ReLU and max pooling), so per-tensor int8 activations see channels of like range.
Each is quantized by XNNPACK's PT2E quantizer (symmetric int8, per-channel weights, per-tensor activations) and
run in PyTorch; printed: logit SQNR and top-1 agreement against the fp32 chain on held-out random images.

    python benchmarks/trained_like.py --depth 18 -o demo-out/dn18-trained-like.pth
    python benchmarks/projection_probe.py demo-out/dn18-trained-like.pth
"""

from __future__ import annotations

import argparse
import copy

import numpy as np
import torch
from torch import nn

from dirac_deploy.opener import open_artifact
from dirac_deploy.quantize.edge import quantized_module, unit_residual_module


class Projection(nn.Module):
    """conv3x3(x, R) + conv1x1(x, D)."""

    def __init__(self, rest: nn.Conv2d, diagonal: nn.Conv2d):
        super().__init__()
        self.rest, self.diagonal = rest, diagonal

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.rest(x) + self.diagonal(x)


def projection_module(chain: nn.Sequential) -> nn.Sequential:
    layers, first = [], True
    for m in chain.children():
        carries = isinstance(m, nn.Conv2d) and not first and m.weight.shape[2:] == (3, 3) and m.stride == (1, 1) \
            and m.weight.shape[0] >= m.weight.shape[1]
        if carries:
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
    return [m.rest, m.diagonal] if isinstance(m, Projection) else [m]


def equalized(module: nn.Sequential, x: np.ndarray, alpha: float) -> nn.Sequential:
    module = copy.deepcopy(module)
    layers = list(module.children())
    weighted = [i for i, m in enumerate(layers) if isinstance(m, (nn.Conv2d, Projection, nn.Linear))]
    peak: dict[int, torch.Tensor] = {}

    def hook(i):
        return lambda _m, _a, out: peak.__setitem__(i, torch.relu(out).amax(dim=(0, 2, 3))) if out.dim() == 4 else None

    handles = [layers[i].register_forward_hook(hook(i)) for i in weighted]
    with torch.no_grad():
        module(torch.from_numpy(x))
    for h in handles:
        h.remove()
    for k, nxt in zip(weighted, weighted[1:]):
        if k not in peak:
            continue
        m = peak[k].clamp_min(1e-8)
        s = (m / m.median()) ** alpha
        for c in _convs(layers[k]):
            c.weight.data /= s.view(-1, 1, 1, 1)
            if c.bias is not None:
                c.bias.data /= s
        if isinstance(layers[nxt], nn.Linear):
            layers[nxt].weight.data *= s.view(1, -1)
        else:
            for c in _convs(layers[nxt]):
                c.weight.data *= s.view(1, -1, 1, 1)
    return module


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("model")
    ap.add_argument("--size", type=int, default=224)
    args = ap.parse_args()
    chain = open_artifact(args.model).plain.eval()
    shape = (3, args.size, args.size)
    calib = np.random.default_rng(1).standard_normal((32, *shape)).astype(np.float32)
    ev = np.random.default_rng(2).standard_normal((48, *shape)).astype(np.float32)
    with torch.no_grad():
        ref = chain(torch.from_numpy(ev)).double().numpy()
    projection = projection_module(chain)
    forms = {"naive": chain, "identity (unit residual)": unit_residual_module(chain), "projection": projection}
    for alpha in (0.5, 1.0):
        forms[f"projection + equalization alpha {alpha}"] = equalized(projection, calib[:16], alpha)
    for name, module in forms.items():
        with torch.no_grad():
            exact = float(np.abs(module(torch.from_numpy(ev)).double().numpy() - ref).max() / np.abs(ref).max())
            q = quantized_module("executorch", module, calib, 8)
            got = np.concatenate([q(torch.from_numpy(ev[i:i + 8])).double().numpy() for i in range(0, len(ev), 8)])
        db = 10 * np.log10((ref ** 2).sum() / ((ref - got) ** 2).sum())
        print(f"{name:40s} float error {exact:.1e}  int8 {db:5.1f} dB  agreement {(got.argmax(1) == ref.argmax(1)).mean():.1%}",
              flush=True)


if __name__ == "__main__":
    main()

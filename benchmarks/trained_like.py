"""A seeded ImageNet DiracNet whose parameters look trained, not tidy: the checkpoint the edge and low-precision
benchmarks quantize.

    python benchmarks/trained_like.py --depth 18 -o demo-out/dn18-trained-like.pth

Per channel: alpha = 1 + 0.3 N(0, 1) (the identity's weight varies around 1, as in trained DiracNets), beta =
0.1 x log-uniform(0.3, 3), BN gamma log-uniform over 10x and BN beta 0.1 N(0, 1); then the BN statistics are
calibrated on random images, so they agree with the activations they normalize (and vary over channels as
those do). Perturbing the running variance after calibration instead makes every block rescale its input
arbitrarily: after 16 blocks the logits are degenerate (one class for every image), which no trained net is.
A random net with every channel alike hides what per-channel int8 does to a trained one; these spreads are
mild next to real ones.
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

import torch
from torch import nn

from dirac_deploy.bench.models import calibrate_bn
from dirac_deploy.fileio import atomic_write
from dirac_deploy.models.dirac import DiracNet
from dirac_deploy.spec import imagenet_spec


def _log_uniform(shape, lo: float, hi: float, g: torch.Generator) -> torch.Tensor:
    return torch.exp(torch.empty(shape).uniform_(math.log(lo), math.log(hi), generator=g))


def trained_like(depth: int = 18, seed: int = 0) -> DiracNet:
    torch.manual_seed(seed)
    g = torch.Generator().manual_seed(seed)
    net = DiracNet(imagenet_spec(depth))
    for m in net.modules():
        if hasattr(m, "alpha") and hasattr(m, "beta"):
            m.alpha.data = 1 + 0.3 * torch.randn(m.alpha.shape, generator=g)
            m.beta.data = 0.1 * _log_uniform(m.beta.shape, 0.3, 3, g)
        if isinstance(m, nn.BatchNorm2d):
            m.weight.data = _log_uniform(m.weight.shape, 0.3, 3, g)
            m.bias.data = 0.1 * torch.randn(m.bias.shape, generator=g)
    return calibrate_bn(net, (3, 224, 224)).eval()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--depth", type=int, choices=(18, 34), default=18)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("-o", "--out", type=Path, required=True)
    args = ap.parse_args()
    net = trained_like(args.depth, args.seed)
    atomic_write(args.out, lambda tmp: torch.save(net.state_dict(), tmp))
    print(f"wrote {args.out}: DiracNet-{args.depth}, trained-like per-channel parameters (seed {args.seed})")


if __name__ == "__main__":
    main()

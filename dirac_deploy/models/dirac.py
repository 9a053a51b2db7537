"""DiracNet v2 (and v1) as a trainable `nn.Module`, computing exactly what the original functional code computes.

Block (pre-activation): o = BN(conv(relu(o), beta * normalize(W) + alpha * delta, padding=1)), no conv bias.
ImageNet: conv7x7/2 -> BN (no ReLU) -> maxpool 3/2/1 -> groups with max-pool 2 between -> ReLU -> GAP -> fc.
CIFAR:    conv3x3   -> BN -> ReLU               -> groups with max-pool 2 between -> ReLU -> GAP -> fc.
v1 (branch `v1`): NCReLU = cat(relu(x), min(x, 0)) instead of ReLU in each block, so block convs take twice
the channels; the delta is tiled; the v1 branch's code has no ReLU before the final average pool (the released
models' notebook has one: `spec.final_relu`).
Parameter names mirror the original flat keys: `conv`, `bn`, `group{g}.block{b}.{conv,bn}`, `fc`.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..kernels import bn_tensors, dirac_delta, dirac_delta_v1, dirac_weight, fold_dirac_conv
from ..spec import DiracNetSpec
from .plain import NCReLU, ncrelu


class DiracConv2d(nn.Module):
    """Conv whose weight is alpha * delta + beta * normalize(W) (Zagoruyko & Komodakis, v2).

    `delta` is a persistent buffer so a checkpoint's own `eye...` tensor is used when it has one.
    `fuse()` returns the equivalent plain `nn.Conv2d` (the hook `timm.utils.reparameterize_model` calls).
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 3, padding: int = 1,
                 per_channel_scales: bool = True, alpha: float = 1.0, beta: float = 0.1,
                 per_channel_beta: bool | None = None, tiled_delta: bool = False):
        super().__init__()
        n_alpha = out_channels if per_channel_scales else 1
        n_beta = out_channels if (per_channel_scales if per_channel_beta is None else per_channel_beta) else 1
        self.in_channels, self.out_channels = in_channels, out_channels
        self.kernel_size, self.padding = kernel_size, padding
        self.weight = nn.Parameter(torch.empty(out_channels, in_channels, kernel_size, kernel_size))
        nn.init.kaiming_normal_(self.weight)
        self.alpha = nn.Parameter(torch.full((n_alpha,), float(alpha)))
        self.beta = nn.Parameter(torch.full((n_beta,), float(beta)))
        make_delta = dirac_delta_v1 if tiled_delta else dirac_delta
        self.delta: torch.Tensor  # a buffer (moves with the module, is not trained)
        self.register_buffer("delta", make_delta(out_channels, in_channels, kernel_size))

    def equivalent_weight(self) -> torch.Tensor:
        """The weight the convolution actually uses (differentiable)."""
        return dirac_weight(self.weight, self.alpha, self.beta, self.delta)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(x, self.equivalent_weight(), padding=self.padding)

    def fuse(self, bn: nn.BatchNorm2d | None = None) -> nn.Conv2d:
        """The equivalent plain conv, with `bn` (an eval-mode BatchNorm2d that follows it) folded in when given;
        computed in float64 (`kernels.fold_dirac_conv`). Without `bn` the conv has no bias."""
        stats = None if bn is None else bn_tensors(bn)
        w, b = fold_dirac_conv(self.weight, self.alpha, self.beta, self.delta, bn=stats,
                               eps=0.0 if bn is None else bn.eps)
        conv = nn.Conv2d(self.in_channels, self.out_channels, self.kernel_size, padding=self.padding, bias=b is not None)
        conv.weight.data.copy_(w)
        if b is not None and conv.bias is not None:
            conv.bias.data.copy_(b)
        return conv.to(self.weight.device)

    def extra_repr(self) -> str:
        return f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, padding={self.padding}"


class DiracBlock(nn.Module):
    """relu (v1: NCReLU) -> DiracConv2d -> BatchNorm2d (pre-activation)."""

    def __init__(self, in_channels: int, out_channels: int, spec: DiracNetSpec):
        super().__init__()
        self.v1 = spec.version == 1
        self.conv = DiracConv2d(2 * in_channels if self.v1 else in_channels, out_channels,
                                per_channel_scales=spec.per_channel_scales, per_channel_beta=spec.per_channel_beta,
                                tiled_delta=self.v1)
        self.bn = nn.BatchNorm2d(out_channels, eps=spec.bn_eps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.bn(self.conv(ncrelu(x) if self.v1 else F.relu(x)))

    def fuse(self) -> nn.Sequential:
        """The equivalent (nonlinearity, conv with bias) pair, BN folded in float64 (timm's `fuse` hook)."""
        act = NCReLU() if self.v1 else nn.ReLU()
        return nn.Sequential(act, self.conv.fuse(self.bn))


class DiracNet(nn.Module):
    """DiracNet v2 (ImageNet or CIFAR stem) built from a `DiracNetSpec`."""

    def __init__(self, spec: DiracNetSpec):
        super().__init__()
        self.spec = spec
        w0 = spec.widths[0]
        if spec.stem == "imagenet":
            self.conv = nn.Conv2d(spec.in_channels, w0, 7, stride=2, padding=3, bias=False)
        else:
            self.conv = nn.Conv2d(spec.in_channels, w0, 3, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(w0, eps=spec.bn_eps)
        prev = w0
        for g, (width, count) in enumerate(zip(spec.widths, spec.convs_per_group)):
            blocks = nn.Sequential()
            for b in range(count):
                blocks.add_module(f"block{b}", DiracBlock(prev if b == 0 else width, width, spec))
            self.add_module(f"group{g}", blocks)
            prev = width
        self.fc = nn.Linear(prev, spec.num_classes)

    def groups(self) -> list[nn.Sequential]:
        return [getattr(self, f"group{g}") for g in range(len(self.spec.widths))]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        o = self.bn(self.conv(x))
        o = F.max_pool2d(o, 3, 2, 1) if self.spec.stem == "imagenet" else F.relu(o)
        for g, group in enumerate(self.groups()):
            if g > 0:
                o = F.max_pool2d(o, 2)
            o = group(o)
        if self.spec.final_relu:  # v2 and the released v1 models; the v1 branch's own code has none
            o = F.relu(o)
        return self.fc(F.adaptive_avg_pool2d(o, 1).flatten(1))

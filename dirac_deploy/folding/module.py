"""Fold the Dirac parts of an arbitrary `nn.Module`, leaving everything else untouched.

`fold_module(model, example)` deep-copies the model and replaces:
- every `DiracBlock` by its `fuse()` (nonlinearity + conv with BN folded);
- every `DiracConv2d` by a plain `Conv2d`, with the `BatchNorm2d` that follows it in an `nn.Sequential` folded
  in (the BN becomes `Identity`), or alone where nothing follows it;
- every `Conv2d` whose weight carries a `DiracParametrization` (torch.nn.utils.parametrize) by the same conv
  with the weight baked in, again absorbing a following `BatchNorm2d` in an `nn.Sequential`.
Any other module, parametrized or not, is left as it is. The copy is verified against the original.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field

import torch
from torch import nn
from torch.nn.utils import parametrize

from ..errors import EquivalenceError
from ..kernels import bn_tensors, dirac_delta, dirac_weight, fold_conv_bn, fold_dirac_conv
from ..models.dirac import DiracBlock, DiracConv2d
from .verify import DEFAULT_RTOL, Proof, compare


class DiracParametrization(nn.Module):
    """W -> alpha * delta + beta * normalize(W), for `parametrize.register_parametrization(conv, "weight", ...)`."""

    def __init__(self, out_channels: int, in_channels: int, kernel_size: int, alpha: float = 1.0, beta: float = 0.1):
        super().__init__()
        self.alpha = nn.Parameter(torch.full((out_channels,), float(alpha)))
        self.beta = nn.Parameter(torch.full((out_channels,), float(beta)))
        self.register_buffer("delta", dirac_delta(out_channels, in_channels, kernel_size))

    def forward(self, weight: torch.Tensor) -> torch.Tensor:
        return dirac_weight(weight, self.alpha, self.beta, self.delta)


@dataclass
class ModuleFoldResult:
    module: nn.Module
    proof: Proof
    replaced: list[str] = field(default_factory=list)


def _is_dirac_parametrized(m: nn.Module) -> bool:
    return (isinstance(m, nn.Conv2d) and parametrize.is_parametrized(m, "weight")
            and any(isinstance(p, DiracParametrization) for p in m.parametrizations.weight))


def _plain_conv(m: nn.Module, bn: nn.BatchNorm2d | None) -> nn.Conv2d:
    """The plain conv for a DiracConv2d or Dirac-parametrized Conv2d, with `bn` folded in (float64)."""
    if isinstance(m, DiracConv2d):
        return m.fuse(bn)
    stats = None if bn is None else bn_tensors(bn)
    chain = list(m.parametrizations.weight)
    if len(chain) == 1:  # the Dirac parametrization alone: recompute its weight in float64
        p = chain[0]
        weight, bias = fold_dirac_conv(m.parametrizations.weight.original, p.alpha, p.beta, p.delta, bias=m.bias,
                                       bn=stats, eps=0.0 if bn is None else bn.eps)
    else:  # composed with other parametrizations: take the value they produce together
        weight, bias = m.weight.detach(), None if m.bias is None else m.bias.detach()
        if stats is not None:
            weight, bias = fold_conv_bn(weight, bias, stats, bn.eps)
    conv = nn.Conv2d(m.in_channels, m.out_channels, m.kernel_size, stride=m.stride, padding=m.padding,
                     dilation=m.dilation, groups=m.groups, bias=bias is not None)
    conv.weight.data.copy_(weight)
    if bias is not None:
        conv.bias.data.copy_(bias)
    return conv.to(weight.device)


def _foldable(m: nn.Module) -> bool:
    return isinstance(m, DiracConv2d) or _is_dirac_parametrized(m)


def _walk(parent: nn.Module, prefix: str, replaced: list[str]) -> None:
    names = list(parent._modules)
    for i, name in enumerate(names):
        child = parent._modules[name]
        path = f"{prefix}{name}"
        if isinstance(child, DiracBlock):
            parent._modules[name] = child.fuse()
            replaced.append(path)
        elif _foldable(child):
            nxt = parent._modules[names[i + 1]] if i + 1 < len(names) else None
            bn = nxt if isinstance(parent, nn.Sequential) and isinstance(nxt, nn.BatchNorm2d) else None
            parent._modules[name] = _plain_conv(child, bn)
            if bn is not None:
                parent._modules[names[i + 1]] = nn.Identity()
                replaced.append(f"{path}+{prefix}{names[i + 1]}")
            else:
                replaced.append(path)
        elif child is not None and not isinstance(child, nn.BatchNorm2d):
            _walk(child, f"{path}.", replaced)


@torch.no_grad()
def fold_module(model: nn.Module, example: torch.Tensor, *, check_batch: int = 4, seed: int = 0,
                rtol: float = DEFAULT_RTOL) -> ModuleFoldResult:
    """Fold every Dirac conv in `model` (eval mode) into plain convs; return the verified copy.

    Args:
        model: any module; not modified.
        example: an input tensor (its shape without the batch axis is used for the seeded check inputs).

    Raises:
        EquivalenceError: train mode, or the copy misses the tolerance on the check inputs.
    """
    if model.training:
        raise EquivalenceError("refusing to fold a module in train mode (batch norm would use batch statistics); "
                               "call .eval() first")
    folded = copy.deepcopy(model)
    replaced: list[str] = []
    _walk(folded, "", replaced)
    folded.eval()
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(check_batch, *example.shape[1:], generator=gen).to(example.device, example.dtype)
    proof = compare(model, folded, x, rtol=rtol, reference_name="original module")
    if not proof.ok:
        raise EquivalenceError(f"fold_module result differs from the original: {proof.describe()}")
    return ModuleFoldResult(folded, proof, replaced)


__all__ = ["DiracParametrization", "ModuleFoldResult", "fold_module"]

"""Fold the Dirac parts of an arbitrary `nn.Module`, leaving everything else untouched.

`fold_module(model, example)` deep-copies the model and replaces:
- every `DiracBlock` by its `fuse()` (nonlinearity + conv with BN folded);
- every Dirac conv by a plain conv of the same dimension (Conv1d/2d/3d), with the BatchNorm of the same
  dimension that follows it in an `nn.Sequential` folded in (the BN becomes `Identity`). A Dirac conv is:
  this project's `DiracConv2d`; a conv whose weight carries a `DiracParametrization`
  (torch.nn.utils.parametrize); or any `nn.Conv1d/2d/3d` carrying `alpha`, `beta` and a `delta` of the
  weight's shape, as the original repository's `diracconv.DiracConv{1,2,3}d` do. Those are recognized by
  these attributes, not by their class, so a copy of the class in a user's code folds too. Two forms exist:
  master's W_hat = alpha delta + beta normalize(W) and the first v1 commits' W_hat = alpha delta + beta W; the
  form is read off the layer's own forward on a seeded probe, and a layer matching neither is left, named.
Any other module is left as it is. The copy is verified against the original, and a fold that replaced
nothing is refused: a proof that compares an untouched model with itself proves nothing.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import parametrize

from ..errors import EquivalenceError, UnfoldableError
from ..kernels import bn_tensors, dirac_delta, dirac_weight, fold_conv_bn, fold_dirac_conv
from ..models.dirac import DiracBlock, DiracConv2d
from .verify import DEFAULT_RTOL, Proof, compare

_CONVS = {1: nn.Conv1d, 2: nn.Conv2d, 3: nn.Conv3d}
_BNS = {1: nn.BatchNorm1d, 2: nn.BatchNorm2d, 3: nn.BatchNorm3d}
_CONV_FN = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}


class DiracParametrization(nn.Module):
    """W -> alpha * delta + beta * normalize(W), for `parametrize.register_parametrization(conv, "weight", ...)`."""

    delta: torch.Tensor  # a buffer (follows the module across devices, saved in its state_dict)

    def __init__(self, out_channels: int, in_channels: int, kernel_size: int, alpha: float = 1.0, beta: float = 0.1):
        super().__init__()
        self.alpha = nn.Parameter(torch.full((out_channels,), float(alpha)))
        self.beta = nn.Parameter(torch.full((out_channels,), float(beta)))
        self.register_buffer("delta", dirac_delta(out_channels, in_channels, kernel_size))

    def forward(self, weight: torch.Tensor) -> torch.Tensor:
        return dirac_weight(weight, self.alpha, self.beta, self.delta)


@dataclass
class ModuleFoldResult:
    """The folded copy, its proof, what was replaced, and what was left with the reason."""

    module: nn.Module
    proof: Proof
    replaced: list[str] = field(default_factory=list)
    left: list[tuple[str, str]] = field(default_factory=list)  # (module path, why it stayed)

    @property
    def partial(self) -> bool:
        return bool(self.left)

    def describe(self) -> str:
        text = f"replaced {len(self.replaced)}: {', '.join(self.replaced)}"
        if self.left:
            text += "; left " + "; ".join(f"{name} ({why})" for name, why in self.left)
        return text


def _is_dirac_parametrized(m: Any) -> bool:
    if not (isinstance(m, nn.Conv2d) and parametrize.is_parametrized(m, "weight")):
        return False
    chain: Any = getattr(m.parametrizations, "weight")  # a ParametrizationList (torch types it Tensor | Module)
    return any(isinstance(p, DiracParametrization) for p in chain)


def _conv_dim(m: nn.Module) -> int | None:
    for dim, cls in _CONVS.items():
        if isinstance(m, cls):
            return dim
    return None


def _has_dirac_attributes(m: nn.Module) -> bool:
    """A conv carrying alpha, beta and a delta of its weight's shape: the original `diracconv` layers."""
    if _conv_dim(m) is None or isinstance(m, DiracConv2d) or parametrize.is_parametrized(m):
        return False
    tensors = [getattr(m, a, None) for a in ("alpha", "beta", "delta", "weight")]
    alpha, beta, delta, weight = tensors
    return (isinstance(alpha, torch.Tensor) and isinstance(beta, torch.Tensor) and isinstance(delta, torch.Tensor)
            and isinstance(weight, torch.Tensor) and delta.shape == weight.shape)


@torch.no_grad()
def _original_form(m: Any) -> bool | None:  # duck-typed: any conv carrying alpha, beta and delta
    """Which W_hat the layer's own forward computes: True for alpha delta + beta normalize(W), False for
    alpha delta + beta W, None for neither (checked in float64 on a seeded probe)."""
    dim = _dim(m)
    probe = copy.deepcopy(m).double().eval()
    gen = torch.Generator().manual_seed(0)
    size = [max(8, d * (k - 1) + 3) for k, d in zip(probe.kernel_size, probe.dilation)]  # room for every tap
    x = torch.randn(2, probe.in_channels, *size, generator=gen, dtype=torch.float64)
    try:
        y = probe(x)
    except Exception:  # a forward we cannot run on a probe is not one we can vouch for
        return None
    for normalized in (True, False):
        w, b = fold_dirac_conv(probe.weight, probe.alpha, probe.beta, probe.delta, bias=probe.bias,
                               normalized=normalized)
        ref = _CONV_FN[dim](x, w, b, probe.stride, probe.padding, probe.dilation, probe.groups)
        if ref.shape == y.shape and torch.allclose(ref, y, rtol=1e-9, atol=1e-9 * float(y.abs().max()) + 1e-12):
            return normalized
    return None


def _dim(m: nn.Module) -> int:
    """The dimension of a conv this module folds (it only folds convs: 1-D, 2-D or 3-D)."""
    dim = _conv_dim(m)
    if dim is None:
        raise TypeError(f"{type(m).__name__} is not a Conv1d/2d/3d")
    return dim


def _bn_of(m: Any, dim: int) -> Any:
    return m if type(m) is _BNS[dim] and m.track_running_stats and m.running_var is not None else None


def _plain_conv(m: Any, bn: Any, normalized: bool = True) -> nn.Module:  # m duck-typed, as _original_form
    """The plain conv for a Dirac conv (`normalized`: which W_hat the layer computes), `bn` folded in (float64)."""
    if isinstance(m, DiracConv2d):
        return m.fuse(bn)
    stats = None if bn is None else bn_tensors(bn)
    eps = 0.0 if bn is None else bn.eps
    if _is_dirac_parametrized(m):
        chain = list(m.parametrizations.weight)
        if len(chain) == 1:  # the Dirac parametrization alone: recompute its weight in float64
            p = chain[0]
            weight, bias = fold_dirac_conv(m.parametrizations.weight.original, p.alpha, p.beta, p.delta,
                                           bias=m.bias, bn=stats, eps=eps)
        else:  # composed with other parametrizations: take the value they produce together
            weight, bias = m.weight.detach(), None if m.bias is None else m.bias.detach()
            if stats is not None:
                weight, bias = fold_conv_bn(weight, bias, stats, eps)
    else:
        weight, bias = fold_dirac_conv(m.weight, m.alpha, m.beta, m.delta, bias=m.bias, bn=stats, eps=eps,
                                       normalized=normalized)
    dim = _dim(m)
    conv = _CONVS[dim](m.in_channels, m.out_channels, m.kernel_size, stride=m.stride, padding=m.padding,
                       dilation=m.dilation, groups=m.groups, bias=bias is not None, padding_mode=m.padding_mode)
    conv.weight.data.copy_(weight)
    if bias is not None and conv.bias is not None:
        conv.bias.data.copy_(bias)
    return conv.to(weight.device)


def _walk(parent: nn.Module, prefix: str, replaced: list[str], left: list[tuple[str, str]]) -> None:
    names = list(parent._modules)
    for i, name in enumerate(names):
        child = parent._modules[name]
        path = f"{prefix}{name}"
        if child is None:
            continue
        if isinstance(child, DiracBlock):
            parent._modules[name] = child.fuse()
            replaced.append(path)
            continue
        normalized: bool | None = True
        if _has_dirac_attributes(child):
            normalized = _original_form(child)
            if normalized is None:
                left.append((path, "a conv with alpha, beta and delta whose forward matches neither "
                                   "alpha*delta + beta*normalize(W) nor alpha*delta + beta*W"))
                continue
        elif not (isinstance(child, DiracConv2d) or _is_dirac_parametrized(child)):
            _walk(child, f"{path}.", replaced, left)
            continue
        dim = 2 if isinstance(child, DiracConv2d) else _dim(child)
        nxt = parent._modules[names[i + 1]] if i + 1 < len(names) else None
        bn = _bn_of(nxt, dim) if isinstance(parent, nn.Sequential) and nxt is not None else None
        parent._modules[name] = _plain_conv(child, bn, bool(normalized))
        if bn is not None:
            parent._modules[names[i + 1]] = nn.Identity()
            replaced.append(f"{path}+{prefix}{names[i + 1]}")
        else:
            replaced.append(path)
            if isinstance(nxt, tuple(_BNS.values())) and not isinstance(parent, nn.Sequential):
                left.append((f"{prefix}{names[i + 1]}", "a BatchNorm after a folded conv outside an nn.Sequential: "
                                                         "its forward may not apply it right after the conv"))


def _leftover_norms(module: nn.Module, replaced: list[str]) -> list[tuple[str, str]]:
    """BatchNorm layers that stay in the copy, when something was folded (they still cost a pass each)."""
    if not replaced:
        return []
    return [(name, "a BatchNorm not directly after a folded conv in an nn.Sequential")
            for name, m in module.named_modules() if isinstance(m, tuple(_BNS.values()))]


@torch.no_grad()
def fold_module(model: nn.Module, example: torch.Tensor, *, check_batch: int = 4, seed: int = 0,
                rtol: float = DEFAULT_RTOL) -> ModuleFoldResult:
    """Fold every Dirac conv in `model` (eval mode) into plain convs; return the verified copy.

    Args:
        model: any module; not modified.
        example: an input tensor (its shape without the batch axis is used for the seeded check inputs).

    Returns:
        ModuleFoldResult: the copy, its proof, `replaced` (module paths, `conv+bn` where a BN was absorbed)
        and `left` (what stayed and why; a partial fold says so there).

    Raises:
        EquivalenceError: train mode, or the copy misses the tolerance on the check inputs.
        UnfoldableError: nothing in the model could be folded (the model would be returned unchanged).
    """
    if model.training:
        raise EquivalenceError("refusing to fold a module in train mode (batch norm would use batch statistics); "
                               "call .eval() first")
    folded = copy.deepcopy(model)
    replaced: list[str] = []
    left: list[tuple[str, str]] = []
    _walk(folded, "", replaced, left)
    if not replaced:
        why = "; ".join(f"{n}: {w}" for n, w in left)
        raise UnfoldableError(
            f"nothing to fold in {type(model).__name__}: found no Dirac conv (a DiracBlock or DiracConv2d, a conv "
            f"with a DiracParametrization, or a Conv1d/2d/3d carrying alpha, beta and delta as diracconv's layers "
            f"do){f' ({why})' if why else ''}; the model is unchanged, so there is no fold to prove")
    noted = {n for n, _ in left}
    left += [(n, w) for n, w in _leftover_norms(folded, replaced) if n not in noted]
    folded.eval()
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(check_batch, *example.shape[1:], generator=gen).to(example.device, example.dtype)
    proof = compare(model, folded, x, rtol=rtol, reference_name="original module")
    if not proof.ok:
        raise EquivalenceError(f"fold_module result differs from the original: {proof.describe()}")
    return ModuleFoldResult(folded, proof, replaced, left)


__all__ = ["DiracParametrization", "ModuleFoldResult", "fold_module"]

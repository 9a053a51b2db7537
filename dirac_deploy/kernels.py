"""The fold math, once, as pure tensor functions.

Notation (per output channel o): W is the raw conv weight [out, in, k, k], delta the Dirac kernel,
alpha/beta the Dirac scales, (gamma, b, mu, var, eps) a batch norm. All functions are pure: they never
modify their arguments. `fold_dirac_conv_bn` works in float64 and casts back, because the fold multiplies
a per-channel BN scale gamma/sqrt(var+eps) into weights whose Dirac centre tap can be orders of magnitude
larger than the rest of the filter; float32 rounding there is what shows up as logit error.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import overload

import numpy as np
import torch


def dirac_delta(out_channels: int, in_channels: int, kernel_size: int, dtype=torch.float32) -> torch.Tensor:
    """delta[o, i, c, c] = 1 if o == i < min(out, in), else 0, with c = k // 2.

    Identical to `torch.nn.init.dirac_`: in non-square transition convs only the first min(out, in)
    output channels carry the identity (v2 semantics; v1 tiled it instead).
    """
    delta = torch.zeros(out_channels, in_channels, kernel_size, kernel_size, dtype=dtype)
    n = min(out_channels, in_channels)
    c = kernel_size // 2
    idx = torch.arange(n)
    delta[idx, idx, c, c] = 1
    return delta


def dirac_delta_v1(out_channels: int, in_channels: int, kernel_size: int, dtype=torch.float32) -> torch.Tensor:
    """v1's tiled delta: the n x n identity (n = min(out, in)) repeated (max(out/in, 1), max(in/out, 1)) times.

    For a v1 block conv over NCReLU input (in = 2C, out = C) this is [I, I], so conv(ncrelu(x), delta) =
    relu(x) + min(x, 0) = x: the identity through the doubled nonlinearity.
    """
    n = min(out_channels, in_channels)
    return dirac_delta(n, n, kernel_size, dtype).repeat(max(out_channels // in_channels, 1),
                                                        max(in_channels // out_channels, 1), 1, 1)


def normalize_filters(weight: torch.Tensor, eps: float = 1e-12) -> torch.Tensor:
    """W_o / max(||W_o||_2, eps): L2 over each output filter (in*k*k values), as `F.normalize(W.view(out, -1))`."""
    flat = weight.reshape(weight.shape[0], -1)
    norm = flat.norm(p=2, dim=1, keepdim=True).clamp_min(eps)
    return (flat / norm).reshape(weight.shape)


def _per_channel(v: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """View a scalar or length-`out` vector as [-1, 1, 1, 1] to scale output filters."""
    return v.reshape(-1, *([1] * (like.dim() - 1)))


def dirac_weight(weight: torch.Tensor, alpha: torch.Tensor, beta: torch.Tensor, delta: torch.Tensor) -> torch.Tensor:
    """W_hat = beta (.) normalize(W) + alpha (.) delta, with alpha/beta scalar or per output channel."""
    return _per_channel(beta, weight) * normalize_filters(weight) + _per_channel(alpha, weight) * delta


def bn_tensors(bn) -> dict[str, torch.Tensor | None]:
    """An eval-mode BatchNorm2d's running_mean, running_var, weight (gamma) and bias (beta), for the fold functions."""
    return {"running_mean": bn.running_mean, "running_var": bn.running_var, "weight": bn.weight, "bias": bn.bias}


def fuse_bn(
    weight: torch.Tensor,
    bias: torch.Tensor | None,
    running_mean: torch.Tensor,
    running_var: torch.Tensor,
    gamma: torch.Tensor | None,
    beta: torch.Tensor | None,
    eps: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Fold an eval-mode batch norm that follows a conv into the conv.

    s = gamma / sqrt(var + eps);  W' = s (.) W;  b' = s (.) (b - mu) + beta.
    A missing conv bias is 0, a missing gamma 1, a missing beta 0 (affine=False BN).
    """
    out = weight.shape[0]
    zeros = torch.zeros(out, dtype=weight.dtype, device=weight.device)
    bias = zeros if bias is None else bias
    gamma = torch.ones(out, dtype=weight.dtype, device=weight.device) if gamma is None else gamma
    beta = zeros if beta is None else beta
    scale = gamma / torch.sqrt(running_var + eps)
    return _per_channel(scale, weight) * weight, scale * (bias - running_mean) + beta


@overload
def _f64(t: torch.Tensor) -> torch.Tensor: ...
@overload
def _f64(t: None) -> None: ...
def _f64(t: torch.Tensor | None) -> torch.Tensor | None:
    return None if t is None else t.detach().to(torch.float64)


def _running_stats(bn: Mapping[str, torch.Tensor | None]) -> tuple[torch.Tensor, torch.Tensor]:
    """A BN's running mean and variance in float64 (an eval-mode BN always has them)."""
    mean, var = bn["running_mean"], bn["running_var"]
    if mean is None or var is None:
        raise ValueError("a batch norm without running statistics cannot be folded (track_running_stats=False)")
    return _f64(mean), _f64(var)


def fold_dirac_conv(
    weight: torch.Tensor,
    alpha: torch.Tensor,
    beta: torch.Tensor,
    delta: torch.Tensor,
    *,
    bias: torch.Tensor | None = None,
    bn: Mapping[str, torch.Tensor | None] | None = None,
    eps: float = 1e-5,
    normalized: bool = True,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """One Dirac conv (and the batch norm after it, if any) as a single conv:

        W_hat = beta (.) N(W) + alpha (.) delta,   N = normalize_filters (v2, master diracconv) or identity
                                                   (the first diracconv.py of branch v1: alpha delta + beta W)
        W' = s (.) W_hat,  b' = s (.) (b - mu) + beta_bn,   s = gamma / sqrt(var + eps)  (s = 1, b' = b without BN)

    Works for 1-D, 2-D and 3-D kernels (alpha/beta scalar or per output channel). Computed in float64 and
    returned in the dtype of `weight`; the bias is None only when there is neither a conv bias nor a BN.
    """
    w = _f64(weight)
    learned = normalize_filters(w) if normalized else w
    w_hat = _per_channel(_f64(beta), w) * learned + _per_channel(_f64(alpha), w) * _f64(delta)
    b = _f64(bias)
    if bn is not None:
        mean, var = _running_stats(bn)
        w_hat, b = fuse_bn(w_hat, b, mean, var, _f64(bn["weight"]), _f64(bn["bias"]), eps)
    return w_hat.to(weight.dtype), None if b is None else b.to(weight.dtype)


def fold_dirac_conv_bn(
    weight: torch.Tensor,
    alpha: torch.Tensor,
    beta: torch.Tensor,
    delta: torch.Tensor,
    bn: Mapping[str, torch.Tensor | None],
    eps: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    """One Dirac block's conv + BN (no conv bias): W' = s (.) (beta normalize(W) + alpha delta), b' = beta_bn - s mu."""
    w, b = fold_dirac_conv(weight, alpha, beta, delta, bn=bn, eps=eps)
    assert b is not None  # a BN always gives a bias
    return w, b


def add_scaled_identity(weight: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """W + diag(s) delta: a same-width shortcut s (.) x summed before the nonlinearity, as part of the conv.

    Needs in == out channels, stride 1 and 'same' padding; s is a scalar or one value per channel.
    """
    delta = dirac_delta(weight.shape[0], weight.shape[1], weight.shape[2], dtype=weight.dtype)
    return weight + _per_channel(scale.to(weight.dtype), weight) * delta


def fold_conv_bn(weight: torch.Tensor, bias: torch.Tensor | None, bn: Mapping[str, torch.Tensor | None],
                 eps: float) -> tuple[torch.Tensor, torch.Tensor]:
    """A plain conv followed by BN (the stem) as one conv, in float64, cast back to the weight's dtype."""
    mean, var = _running_stats(bn)
    w, b = fuse_bn(_f64(weight), _f64(bias), mean, var, _f64(bn["weight"]), _f64(bn["bias"]), eps)
    return w.to(weight.dtype), b.to(weight.dtype)


def identity_dominance(w) -> np.ndarray:
    """Per output channel: |diagonal centre tap| / max |every other entry of that filter| (0 without a diagonal).

    Above ~127 the learned part of the filter is below one step of a per-channel int8 scale set by the diagonal.
    """
    w = np.asarray(w.detach().cpu() if isinstance(w, torch.Tensor) else w, dtype=np.float64)
    o, i, kh, kw = w.shape
    n = min(o, i)
    rest = np.abs(w).copy()
    idx = np.arange(n)
    diag = np.zeros(o)
    diag[:n] = np.abs(w[idx, idx, kh // 2, kw // 2])
    rest[idx, idx, kh // 2, kw // 2] = 0
    other = rest.reshape(o, -1).max(axis=1)
    return np.where(other > 0, diag / np.maximum(other, 1e-30), 0.0)

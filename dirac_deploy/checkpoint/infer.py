"""Architecture inference from tensor shapes, and validation of a state_dict against it.

Works on the canonical (native `DiracNet`) key names: `conv.weight`, `bn.*`, `group{g}.block{b}.conv.{weight,
alpha,beta,delta}`, `group{g}.block{b}.bn.*`, `fc.*`.
"""

from __future__ import annotations

import re
from dataclasses import replace

import torch

from ..errors import CheckpointError
from ..spec import CIFAR_MEAN, CIFAR_STD, IMAGENET_MEAN, IMAGENET_STD, DiracNetSpec

_BLOCK = re.compile(r"^group(\d+)\.block(\d+)\.")


def _shape(sd: dict, key: str, ndim: int) -> tuple[int, ...]:
    t = sd.get(key)
    if not isinstance(t, torch.Tensor):
        raise CheckpointError(f"missing tensor {key!r}")
    if t.dim() != ndim:
        raise CheckpointError(f"{key} has shape {list(t.shape)}, expected a {ndim}-D tensor")
    return tuple(t.shape)


def group_structure(keys, weight_suffix: str) -> list[int]:
    """Blocks per group from keys like `group1.block3<weight_suffix>`; groups and blocks must be contiguous."""
    seen: dict[int, set[int]] = {}
    for k in keys:
        m = _BLOCK.match(k)
        if m and k.endswith(weight_suffix) and k.count(".") == weight_suffix.count(".") + 1:
            seen.setdefault(int(m.group(1)), set()).add(int(m.group(2)))
    if not seen:
        raise CheckpointError(f"no Dirac blocks found (no keys like 'group0.block0{weight_suffix}')")
    counts = []
    for g in range(max(seen) + 1):
        blocks = seen.get(g)
        if not blocks or blocks != set(range(max(blocks) + 1)):
            raise CheckpointError(f"group{g} has blocks {sorted(blocks or [])}; expected block0..blockN without gaps")
        counts.append(len(blocks))
    return counts


def infer_spec(sd: dict, *, bn_eps: float | None = None, input_size: int | None = None,
               mean=None, std=None, final_relu: bool | None = None, weight_suffix: str = ".conv.weight",
               stem_key: str = "conv.weight", fc_key: str = "fc.weight") -> DiracNetSpec:
    """Infer a `DiracNetSpec` from tensor shapes.

    Stem kernel 7 means ImageNet, 3 means CIFAR; group/block counts come from the keys, widths from the first
    conv of each group, the class count from the fc rows, scalar vs per-channel scales from `alpha`/`beta`
    lengths, and v1 (NCReLU) from block convs reading twice the stem's channels.
    """
    out0, cin, kh, kw = _shape(sd, stem_key, 4)
    if (kh, kw) == (7, 7):
        stem = "imagenet"
    elif (kh, kw) == (3, 3):
        stem = "cifar"
    else:
        raise CheckpointError(f"{stem_key} is a {kh}x{kw} conv; a DiracNet stem is 7x7 (ImageNet) or 3x3 (CIFAR)")
    counts = group_structure(sd.keys(), weight_suffix)
    widths = tuple(_shape(sd, f"group{g}.block0{weight_suffix}", 4)[0] for g in range(len(counts)))
    num_classes = _shape(sd, fc_key, 2)[0]
    # v1 block convs read NCReLU output: twice the channels of the stem.
    version = 1 if _shape(sd, f"group0.block0{weight_suffix}", 4)[1] == 2 * out0 else 2
    per_channel = per_channel_beta = True
    for key in ("alpha", "beta"):
        full = f"group0.block0.conv.{key}"
        if full in sd:
            if not isinstance(sd[full], torch.Tensor):
                raise CheckpointError(f"{full} is a {type(sd[full]).__name__}, expected a tensor of 1 or {widths[0]} values")
            n = sd[full].numel()
            if n not in (1, widths[0]):
                raise CheckpointError(f"{full} has {n} values; expected 1 (scalar) or {widths[0]} (per channel)")
            if key == "alpha":
                per_channel = n != 1 or widths[0] == 1
            else:
                per_channel_beta = n != 1 or widths[0] == 1
    imagenet = stem == "imagenet"
    return DiracNetSpec(
        stem=stem, widths=widths, convs_per_group=tuple(counts), num_classes=num_classes, in_channels=cin,
        per_channel_scales=per_channel, bn_eps=1e-5 if bn_eps is None else bn_eps,
        input_size=input_size or (224 if imagenet else 32),
        mean=tuple(mean) if mean else (IMAGENET_MEAN if imagenet else CIFAR_MEAN),
        std=tuple(std) if std else (IMAGENET_STD if imagenet else CIFAR_STD),
        version=version, per_channel_beta=None if per_channel_beta == per_channel else per_channel_beta,
        final_relu=final_relu,
    )


def check_against(expected: dict[str, torch.Tensor], sd: dict, what: str) -> None:
    """Every expected key present with the expected shape, no unexpected keys, all values finite."""
    missing = [k for k in expected if k not in sd]
    unexpected = [k for k in sd if k not in expected]
    if missing or unexpected:
        parts = []
        if missing:
            parts.append(f"missing {missing[:6]}{' ...' if len(missing) > 6 else ''}")
        if unexpected:
            parts.append(f"unexpected {unexpected[:6]}{' ...' if len(unexpected) > 6 else ''}")
        raise CheckpointError(f"inconsistent {what}: {'; '.join(parts)}")
    for k, ref in expected.items():
        t = sd[k]
        if not isinstance(t, torch.Tensor):
            raise CheckpointError(f"{k} is a {type(t).__name__}, expected a tensor")
        if ref.is_floating_point() and not t.is_floating_point():
            raise CheckpointError(f"{k} is a {str(t.dtype).removeprefix('torch.')} tensor; a DiracNet stores real "
                                  f"floating-point weights (refusing to cast it)")
        if tuple(t.shape) != tuple(ref.shape) and not (t.numel() == ref.numel() == 1):
            raise CheckpointError(f"inconsistent shapes in {what}: {k} is {list(t.shape)}, but the architecture "
                                  f"implied by the other tensors needs {list(ref.shape)}")
        check_values(k, t)


# No trained weight, bias, scale or batch-norm statistic comes near this; past it a fold's products overflow
# float32 (3.4e38) or lose every other weight's precision, and the error would surface later as "inf".
MAX_ABS_VALUE = 1e15


def check_values(name: str, t) -> None:
    """A checkpoint tensor's values, named when impossible: NaN/Inf, a negative batch-norm variance, or a
    magnitude no trained net has (`MAX_ABS_VALUE`).

    Raises:
        CheckpointError: naming the tensor, how many values and the worst one.
    """
    if not isinstance(t, torch.Tensor) or not t.is_floating_point() or t.numel() == 0:
        return
    if not torch.isfinite(t).all():
        bad = int((~torch.isfinite(t)).sum())
        raise CheckpointError(f"{name} contains {bad} NaN/Inf value(s): the checkpoint is corrupt or training "
                              f"diverged; nothing to fold")
    if name.endswith("running_var") and (t < 0).any():
        raise CheckpointError(f"{name} has {int((t < 0).sum())} negative value(s) (the lowest {float(t.min()):.3g}): "
                              f"a batch-norm variance is never negative; the checkpoint is corrupt; nothing to fold")
    worst = float(t.abs().max())
    if worst > MAX_ABS_VALUE:
        raise CheckpointError(f"{name} holds a value of magnitude {worst:.3g} ({int((t.abs() > MAX_ABS_VALUE).sum())} "
                              f"over {MAX_ABS_VALUE:.0e}): no trained net has such weights, and folding them would "
                              f"overflow; the checkpoint is corrupt; nothing to fold")


def with_overrides(spec: DiracNetSpec, **kw) -> DiracNetSpec:
    return replace(spec, **{k: v for k, v in kw.items() if v is not None})

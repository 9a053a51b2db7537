"""Fold a DiracNet into a plain conv-ReLU chain (`models.plain.plain_layers`) and prove it equal."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..errors import EquivalenceError
from ..models.dirac import DiracNet
from ..models.plain import PlainNet, plain_layers
from ..spec import DiracNetSpec
from .kernels import fold_conv_bn, fold_dirac_conv_bn
from .verify import DEFAULT_RTOL, Proof, compare, seeded_inputs


@dataclass
class FoldResult:
    """The folded model with its proof. `plain` is in eval mode."""

    plain: PlainNet
    proof: Proof
    spec: DiracNetSpec


def _bn_tensors(bn: torch.nn.BatchNorm2d) -> dict:
    return {"running_mean": bn.running_mean, "running_var": bn.running_var, "weight": bn.weight, "bias": bn.bias}


def folded_state_dict(model: DiracNet) -> dict[str, torch.Tensor]:
    """Folded weights keyed like `PlainNet(plain_layers(spec))`; reads `model`, never writes it."""
    spec = model.spec
    sd = {}
    w, b = fold_conv_bn(model.conv.weight, model.conv.bias, _bn_tensors(model.bn), model.bn.eps)
    sd["stem_conv.weight"], sd["stem_conv.bias"] = w, b
    for g, group in enumerate(model.groups()):
        for b_idx, block in enumerate(group):
            c = block.conv
            w, b = fold_dirac_conv_bn(c.weight, c.alpha, c.beta, c.delta, _bn_tensors(block.bn), block.bn.eps)
            sd[f"group{g}_block{b_idx}_conv.weight"], sd[f"group{g}_block{b_idx}_conv.bias"] = w, b
    sd["fc.weight"], sd["fc.bias"] = model.fc.weight.detach().clone(), model.fc.bias.detach().clone()
    assert len(sd) == 2 * (2 + sum(spec.convs_per_group))
    return sd


def fold(model: DiracNet, *, check_batch: int = 4, seed: int = 0, rtol: float = DEFAULT_RTOL,
         input_size: int | None = None) -> FoldResult:
    """Fold `model` (eval mode) into a plain chain and verify it.

    Args:
        model: a `DiracNet` in eval mode; it is not modified.
        check_batch: number of seeded N(0,1) images the proof runs on.
        seed: seed of those images.
        rtol: tolerance on max|logit error| / max|logit|.
        input_size: spatial size of the check images (default: the spec's input size).

    Returns:
        FoldResult with the plain model (eval mode) and its proof.

    Raises:
        EquivalenceError: the model is in train mode, or the folded chain misses the tolerance.
    """
    if model.training:
        raise EquivalenceError("refusing to fold a model in train mode: batch norm would use batch statistics, "
                               "not its running averages; call model.eval() first")
    spec = model.spec
    plain = PlainNet(plain_layers(spec))
    plain.load_state_dict(folded_state_dict(model), strict=True)
    plain.eval()
    inputs = seeded_inputs(check_batch, spec.in_channels, input_size or spec.input_size, seed)
    inputs = inputs.to(next(model.parameters()).device)
    plain.to(inputs.device)
    proof = compare(model, plain, inputs, rtol=rtol)
    if not proof.ok:
        raise EquivalenceError(f"folded {spec.name} does not reproduce the unfolded model: {proof.describe()}")
    return FoldResult(plain, proof, spec)

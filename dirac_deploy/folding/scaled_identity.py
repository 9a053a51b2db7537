"""Fold a scaled-identity residual net into a conv-(Leaky)ReLU chain, or refuse, naming the block and why.

Block "scaled": act(BN(W * x) + s (.) x) = act(W' * x + b') with W' = diag(gamma/sigma) W + diag(s) delta and
b' = beta - gamma mu / sigma (BN folded first, then the shortcut added to the centre tap).
Activation alpha * relu(z) + (1 - alpha) * z is ReLU when alpha == 1, else exactly LeakyReLU(1 - alpha).
"""

from __future__ import annotations

from ..errors import UnfoldableError
from ..kernels import add_scaled_identity, bn_tensors, fold_conv_bn
from ..models.scaled_identity import ScaledIdentityNet
from .chain import Op

WHY = {
    "preact": ("its shortcut carries x while the conv sees relu(x) (a pre-activation skip): the sum "
               "W * relu(x) + s x is not one conv of one input"),
    "two_conv": ("its shortcut spans two convs with a nonlinearity between them (ResNet's shortcut of length "
                 "2): no single conv equals the block"),
}


def _act(module, notes: list[str]) -> Op:
    alpha = float(module.alpha.detach())
    if alpha == 1.0:
        return Op("relu")
    notes.append(f"alpha={alpha:.4g}")
    return Op("leaky_relu", args={"negative_slope": 1.0 - alpha})


def scaled_identity_ops(model: ScaledIdentityNet) -> tuple[list[Op], list[str]]:
    """(ops, notes) for the folded chain; raises UnfoldableError for a block that cannot fold."""
    spec = model.spec
    if spec.shortcut != "scaled":
        raise UnfoldableError(f"cannot fold {spec.name} into a same-width conv chain: block group0.blocks.0: "
                              f"{WHY[spec.shortcut]}; folding it would need the input carried as extra channels "
                              f"(RMNet-style widening), which this tool does not do")
    leaky: list[str] = []
    ops: list[Op] = []

    def conv_bn_act(name: str, unit, cin: int, cout: int) -> None:
        w, b = fold_conv_bn(unit.conv.weight, None, bn_tensors(unit.bn), unit.bn.eps)
        ops.append(Op("conv", name, dict(in_channels=cin, out_channels=cout, kernel_size=3, stride=1, padding=1), w, b))
        ops.append(_act(unit.act, leaky))

    conv_bn_act("stem_conv", model.stem, spec.in_channels, spec.widths[0])
    prev = spec.widths[0]
    for g, width in enumerate(spec.widths):
        group = getattr(model, f"group{g}")
        if g > 0:
            ops.append(Op("maxpool", f"group{g}_pool", dict(kernel_size=2, stride=2, padding=0)))
            conv_bn_act(f"group{g}_transition_conv", group.transition, prev, width)
        for i, block in enumerate(group.blocks):
            w, b = fold_conv_bn(block.conv.weight, None, bn_tensors(block.bn), block.bn.eps)
            w = add_scaled_identity(w, block.scale.detach())
            ops.append(Op("conv", f"group{g}_block{i}_conv",
                          dict(in_channels=width, out_channels=width, kernel_size=3, stride=1, padding=1), w, b))
            ops.append(_act(block.act, leaky))
        prev = width
    ops += [Op("gap", "pool"), Op("flatten", "flatten"),
            Op("linear", "fc", dict(in_features=prev, out_features=spec.num_classes),
               model.fc.weight.detach().clone(), model.fc.bias.detach().clone())]
    notes = []
    if leaky:
        notes.append(f"variable activation with alpha < 1 in {len(leaky)} layer(s) ({', '.join(leaky[:4])}"
                     f"{', ...' if len(leaky) > 4 else ''}): folded to a conv-LeakyReLU chain (slope 1 - alpha), "
                     f"not conv-ReLU")
    return ops, notes

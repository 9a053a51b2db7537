"""A folded network as a list of ops, the rewrites that make it a plain chain, and the final `PlainNet`.

`diracnet_ops` transcribes a DiracNet in its own order with folded conv tensors; `canonicalize` applies
exact rewrites; `to_plain` builds the module. Structure alone (no tensors) gives `plain_layers(spec)`.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import torch

from ..checkpoint.infer import check_values
from ..errors import CheckpointError
from ..kernels import bn_tensors, fold_conv_bn, fold_dirac_conv_bn
from ..models.plain import PlainNet
from ..spec import DiracNetSpec, LayerSpec


@dataclass
class Op:
    kind: str  # conv, relu, leaky_relu, ncrelu, maxpool, gap, flatten, linear
    name: str = ""
    args: dict = field(default_factory=dict)
    weight: torch.Tensor | None = None
    bias: torch.Tensor | None = None


def diracnet_ops(spec: DiracNetSpec, model=None) -> list[Op]:
    """The DiracNet's computation in its own order, each conv+BN (and Dirac parameterization) folded.

    With `model=None` only the structure is produced (tensors None).
    """
    act = "ncrelu" if spec.version == 1 else "relu"
    w0 = spec.widths[0]
    ops = []
    w = b = None
    if model is not None:
        w, b = fold_conv_bn(model.conv.weight, model.conv.bias, bn_tensors(model.bn), model.bn.eps)
    if spec.stem == "imagenet":
        ops += [Op("conv", "stem_conv", dict(in_channels=spec.in_channels, out_channels=w0, kernel_size=7, stride=2,
                                             padding=3), w, b),
                Op("maxpool", "stem_pool", dict(kernel_size=3, stride=2, padding=1))]
    else:
        ops += [Op("conv", "stem_conv", dict(in_channels=spec.in_channels, out_channels=w0, kernel_size=3, stride=1,
                                             padding=1), w, b), Op("relu")]
    prev = w0
    for g, (width, count) in enumerate(zip(spec.widths, spec.convs_per_group)):
        if g > 0:
            ops.append(Op("maxpool", f"group{g}_pool", dict(kernel_size=2, stride=2, padding=0)))
        for i in range(count):
            cin = prev if i == 0 else width
            if model is not None:
                block = getattr(model, f"group{g}")[i]
                c = block.conv
                w, b = fold_dirac_conv_bn(c.weight, c.alpha, c.beta, c.delta, bn_tensors(block.bn), block.bn.eps)
            ops += [Op(act), Op("conv", f"group{g}_block{i}_conv",
                                dict(in_channels=2 * cin if act == "ncrelu" else cin, out_channels=width,
                                     kernel_size=3, stride=1, padding=1), w, b)]
        prev = width
    if spec.final_relu:
        ops.append(Op("relu"))
    fc_w = fc_b = None
    if model is not None:
        fc_w, fc_b = model.fc.weight.detach().clone(), model.fc.bias.detach().clone()
    ops += [Op("gap", "pool"), Op("flatten", "flatten"),
            Op("linear", "fc", dict(in_features=prev, out_features=spec.num_classes), fc_w, fc_b)]
    return ops


def _neg_half_inputs(op: Op, keep_only_first: bool) -> Op:
    """The next conv after an absorbed NCReLU: negate (or drop) the weights reading the second half."""
    c = op.args["in_channels"] // 2
    args = dict(op.args)
    if keep_only_first:
        args["in_channels"] = c
        w = None if op.weight is None else op.weight[:, :c].clone()
    else:
        w = None if op.weight is None else torch.cat([op.weight[:, :c], -op.weight[:, c:]], dim=1)
    return replace(op, args=args, weight=w)


NCRELU_FORMS = ("keep", "absorb")


def canonicalize(ops: list[Op], ncrelu: str = "absorb") -> list[Op]:
    """Exact rewrites to a canonical plain chain. Each rule holds in real arithmetic:

    - ReLU after ReLU is one ReLU.
    - max-pool then ReLU (or LeakyReLU) becomes ReLU then max-pool: max commutes with any non-decreasing
      elementwise map, and max-pool pads with -inf. conv->ReLU adjacency is what runtimes fuse.
    - NCReLU(x) = [relu(x), -relu(-x)]. Directly after a ReLU it is [relu(x), 0]: dropped, and the next conv
      keeps only the weights reading the first half (smaller, in either form).
    - `ncrelu="absorb"`: directly after a conv W, b it is absorbed: the conv emits [x; -x] (weights [W; -W],
      biases [b; -b]), a ReLU gives [relu(x), relu(-x)], and the next conv negates the weights reading the
      second half. A pure conv-ReLU chain, but that conv has twice the outputs: more parameters and FLOPs.
    - `ncrelu="keep"` (the authors' folded form): it stays an NCReLU layer, the convs keep their sizes; it
      exports as Max/Min/Concat, which every runtime runs.
    - After a max-pool it stays an NCReLU layer in both forms: the absorbed form would pool relu(-x), and
      max(-x) is not -max(x).
    """
    if ncrelu not in NCRELU_FORMS:
        raise ValueError(f"ncrelu must be one of {NCRELU_FORMS}, got {ncrelu!r}")
    out: list[Op] = []
    i = 0
    while i < len(ops):
        op = ops[i]
        last = out[-1] if out else None
        if op.kind == "relu" and last is not None and last.kind == "relu":
            i += 1
            continue
        if op.kind in ("relu", "leaky_relu") and last is not None and last.kind == "maxpool":
            out.insert(len(out) - 1, op)
            i += 1
            continue
        absorbable = ("conv", "relu") if ncrelu == "absorb" else ("relu",)
        if op.kind == "ncrelu" and last is not None and last.kind in absorbable:
            nxt = ops[i + 1]
            assert nxt.kind == "conv", "NCReLU must feed a conv"
            if last.kind == "conv":
                a = dict(last.args, out_channels=2 * last.args["out_channels"])
                w = None if last.weight is None else torch.cat([last.weight, -last.weight])
                b = None if last.bias is None else torch.cat([last.bias, -last.bias])
                out[-1] = replace(last, args=a, weight=w, bias=b)
                out.append(Op("relu"))
            ops = ops[: i + 1] + [_neg_half_inputs(nxt, keep_only_first=last.kind == "relu")] + ops[i + 2:]
            i += 1
            continue
        out.append(op)
        i += 1
    return name_activations(out)


def name_activations(ops: list[Op]) -> list[Op]:
    """Activations take the name of the conv they follow (`group0_block1_relu`); pools keep theirs."""
    named, base = [], "input"
    for op in ops:
        if op.kind == "conv":
            base = op.name.removesuffix("_conv")
        if not op.name:
            op = replace(op, name=f"{base}_{op.kind}")
        named.append(op)
    return named


def to_plain(ops: list[Op]) -> PlainNet:
    """Build the module and load the folded tensors (eval mode)."""
    layers = [LayerSpec(op.kind, op.name, dict(op.args)) for op in ops]
    plain = PlainNet(layers)
    sd = {}
    for op in ops:
        if op.kind in ("conv", "linear"):
            sd[f"{op.name}.weight"], sd[f"{op.name}.bias"] = op.weight, op.bias
    plain.load_state_dict(sd, strict=True)
    return plain.eval()


def plain_layers(spec: DiracNetSpec, ncrelu: str = "keep") -> list[LayerSpec]:
    """The folded chain's layers for a DiracNet spec (structure only)."""
    return [LayerSpec(op.kind, op.name, dict(op.args)) for op in canonicalize(diracnet_ops(spec), ncrelu)]


def folded_source_ops(spec: DiracNetSpec, sd: dict, what: str) -> list[Op]:
    """The ops of an already-folded source (tensors under plain-chain names `stem_conv`, `group{g}_block{b}_conv`,
    `fc`), in its own order, every tensor checked against the shape the architecture needs.

    Raises:
        CheckpointError: a missing, unexpected or mis-shaped tensor (naming the likely layout when the shapes
            say DiracNet v1: block convs that read twice the channels).
    """
    ops = diracnet_ops(spec)
    expected: dict[str, tuple[int, ...]] = {}
    for op in ops:
        if op.kind == "conv":
            a = op.args
            expected[f"{op.name}.weight"] = (a["out_channels"], a["in_channels"], a["kernel_size"], a["kernel_size"])
            expected[f"{op.name}.bias"] = (a["out_channels"],)
        elif op.kind == "linear":
            expected[f"{op.name}.weight"] = (op.args["out_features"], op.args["in_features"])
            expected[f"{op.name}.bias"] = (op.args["out_features"],)
    missing = sorted(set(expected) - set(sd))
    unexpected = sorted(set(sd) - set(expected))
    if missing or unexpected:
        raise CheckpointError(f"inconsistent {what}: missing {missing[:6]}, unexpected {unexpected[:6]}")
    for k, shape in expected.items():
        t = sd[k]
        if not isinstance(t, torch.Tensor) or tuple(t.shape) != shape:
            got = list(t.shape) if isinstance(t, torch.Tensor) else type(t).__name__
            hint = ""
            if isinstance(t, torch.Tensor) and t.dim() == 4 and len(shape) == 4 and t.shape[1] == 2 * shape[1]:
                hint = (" - the block convs read twice the channels, as DiracNet v1 (NCReLU) convs do; check that "
                        "every block conv has the v1 shape [out, 2 x in, 3, 3]")
            raise CheckpointError(f"inconsistent shapes in {what}: {k} is {got}, but the architecture implied by the "
                                  f"other tensors needs {list(shape)}{hint}")
        check_values(k, t)  # NaN/Inf, negative variances, overflowing magnitudes: named here, not as "inf" later
    out = []
    for op in ops:
        if op.kind in ("conv", "linear"):
            op = replace(op, weight=sd[f"{op.name}.weight"].float(), bias=sd[f"{op.name}.bias"].float())
        out.append(op)
    return out

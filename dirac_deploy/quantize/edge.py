"""int8 programs of the folded chain for the edge runtimes (ExecuTorch and LiteRT, both on XNNPACK): the naive
form and the identity-aware one.

Naive: the chain as it is, through PT2E (the stack's own quantizer, `pt2e_quantizer()` in its export module:
symmetric int8 with per-channel weights; `prepare_pt2e` -> calibration -> `convert_pt2e`), then lowered.
Per-channel int8 of a folded kernel W = diag(c) delta + R sets each row's scale from its identity tap and
erases R (`rescale` module docstring).

Identity-aware: the same chain first rewritten, in PyTorch, into the unit-residual form (`rescale`'s equations,
written once there: `absorb_input_scale`, `output_units`, `unit_residual_weight`): each identity-carrying conv
becomes conv(a~, W'/d - I delta) + a~, exact in float, so only the learned part is quantized and the identity
is an int8 residual add, which XNNPACK runs in its own kernels (measured: fully delegated, on both runtimes).
"""

from __future__ import annotations

import copy
import warnings

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .._optional import require
from ..errors import ExportError, first_line
from .projection import Projection, equalized, projection_module
from .rescale import RescaleError, absorb_input_scale, output_units, unit_residual_weight

PROJECTION = "int8-projection"  # the per-conv table's form of a `Projection`
EQUALIZATION_IMAGES = 16  # calibration images whose activation peaks set the equalization

_CARRY = (nn.ReLU, nn.MaxPool2d, nn.AvgPool2d, nn.AdaptiveAvgPool2d, nn.Flatten)  # commute with a positive scale


class UnitResidual(nn.Module):
    """conv(x) + x, the input zero-padded by `extra` channels for a widening conv (the identity on the first
    `in` outputs)."""

    def __init__(self, conv: nn.Conv2d, extra: int):
        super().__init__()
        self.conv, self.extra = conv, extra

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = F.pad(x, (0, 0, 0, 0, 0, self.extra)) if self.extra else x
        return self.conv(x) + identity


def _carries_identity(m: nn.Conv2d, first: bool, widening: bool) -> bool:
    o, i, kh, kw = m.weight.shape
    return (not first and (o == i or (widening and o > i)) and (kh, kw) == (3, 3) and m.stride == (1, 1)
            and m.padding == (1, 1) and m.groups == 1 and m.dilation == (1, 1))


def _conv(m: nn.Conv2d, weight: np.ndarray, bias: np.ndarray) -> nn.Conv2d:
    """A copy of `m`'s geometry with the given weight and bias."""
    conv = copy.deepcopy(m)
    conv.weight.data = torch.from_numpy(weight).float()
    conv.bias = nn.Parameter(torch.from_numpy(bias).float())
    return conv


def unit_residual_module(chain: nn.Sequential, *, widening: bool = False) -> nn.Sequential:
    """`chain` (a PlainNet: conv, ReLU, pooling, flatten, linear) in the unit-residual form, the same function in
    float (`rescale` module docstring): identity-carrying convs as `UnitResidual`, every scale absorbed by
    the next conv or the classifier, computed in float64.

    `widening`: also carry the identity through a widening conv (out > in: the input zero-padded along its
    channels before the add). Off for XNNPACK: its runtime refuses a quantized channel pad when the program
    loads (xnn_status_unsupported_parameter, measured on DiracNet-18 with ExecuTorch 1.5.1), so a widening
    conv stays a plain int8 conv on both edge stacks.

    Raises:
        RescaleError: a layer the per-channel scale cannot pass (NCReLU, LeakyReLU: fold v1 nets with
            `ncrelu='absorb'`).
    """
    layers: list[nn.Module] = []
    e: np.ndarray | None = None  # the per-channel scale the current activation is carried in
    first = True
    for name, m in chain.named_children():
        if isinstance(m, nn.Conv2d):
            w = absorb_input_scale(m.weight.detach().double().numpy(), e)
            b = m.bias.detach().double().numpy() if m.bias is not None else np.zeros(w.shape[0])
            if _carries_identity(m, first, widening):
                d, _ = output_units(w)
                layers.append(UnitResidual(_conv(m, unit_residual_weight(w, d, True), b / d), w.shape[0] - w.shape[1]))
                e = d
            else:
                layers.append(_conv(m, w, b))
                e = None
            first = False
        elif isinstance(m, nn.Linear):
            w = m.weight.detach().double().numpy()
            lin = nn.Linear(m.in_features, m.out_features)
            lin.weight.data = torch.from_numpy(w if e is None else w * e.reshape(1, -1)).float()
            lin.bias.data = m.bias.detach().clone() if m.bias is not None else torch.zeros(m.out_features)
            layers.append(lin)
            e = None
        elif isinstance(m, _CARRY):
            layers.append(copy.deepcopy(m))
        else:
            raise RescaleError(f"cannot carry the per-channel scale through layer {name!r} ({type(m).__name__}); "
                               f"the identity-aware int8 needs a conv-ReLU chain (a v1 checkpoint: fold it with "
                               f"`ncrelu='absorb'`), or use `method='naive'`")
    return nn.Sequential(*layers).eval()


def quantized_module(engine: str, module: nn.Module, calib: np.ndarray, batch: int = 1):
    """`module` through PT2E with `engine`'s quantizer (symmetric int8, per-channel weights), calibrated on
    `calib` in batches of `batch` (the exported graph's static shape). Returns the converted graph module."""
    from ..export.program import BY_ENGINE

    stack = BY_ENGINE[engine].stack()
    quantizer = stack.pt2e_quantizer()
    pt2e = require("torchao.quantization.pt2e.quantize_pt2e")
    shape = tuple(calib.shape[1:])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        graph = torch.export.export(module.eval(), (torch.zeros(batch, *shape),)).module()
        prepared = pt2e.prepare_pt2e(graph, quantizer)
        with torch.no_grad():
            for i in range(0, len(calib) - batch + 1, batch):
                prepared(torch.from_numpy(np.ascontiguousarray(calib[i:i + batch], dtype=np.float32)))
        return pt2e.convert_pt2e(prepared, fold_quantize=stack.FOLD_QUANTIZE)


def _conv_precisions(graph_module) -> dict[str, int]:
    """Convs of a converted PT2E graph by the precision of their weight: "int8" when it comes through a
    dequantize (the quantizer annotated it), else "fp32"."""
    counts = {"int8": 0, "fp32": 0}
    for node in graph_module.graph.nodes:
        if node.op == "call_function" and "conv" in str(node.target):
            weight = node.args[1] if len(node.args) > 1 else None
            quantized = getattr(weight, "op", "") == "call_function" and "dequantize" in str(getattr(weight, "target", ""))
            counts["int8" if quantized else "fp32"] += 1
    return counts


def program(engine: str, chain: nn.Sequential, input_shape: tuple[int, int, int], calib: np.ndarray | None = None,
            *, form: str = "fp32", batch: int = 1, table_x: np.ndarray | None = None):
    """The chain as an `export.program.Program` of `engine` ("executorch", "litert") for `batch` images: `form`
    "fp32" (lowered as it is), "naive", "identity" (the unit-residual form) or "projection" (the projection
    form with activation equalization, `quantize.projection`), int8 calibrated on `calib`. With `table_x`, an int8
    program carries `layers`, its per-conv table on those images (`layer_table`).

    Raises:
        RescaleError: the identity-aware form cannot be written for this chain.
        ExportError: the stack cannot quantize or lower it.
    """
    from ..export.program import lower_program
    from ..runtimes.native_log import quiet_imports

    quiet_imports()  # torchao's import notices, whichever stack
    if form == "fp32":
        return lower_program(engine, chain.eval(), input_shape, batch)  # every conv fp32 (its default count)
    if calib is None:
        raise ValueError("int8 needs calibration images")
    from ..export.program import BY_ENGINE

    if form == "projection":
        module = equalized(projection_module(chain), calib[:EQUALIZATION_IMAGES])
    else:
        module = unit_residual_module(chain) if form == "identity" else chain
    module = BY_ENGINE[engine].stack().prepare(module)  # before PT2E: its graph is no longer a chain of layers
    try:
        source = quantized_module(engine, module, calib, batch)
    except Exception as e:  # PT2E raises many types; all mean "could not quantize"
        raise ExportError(f"PT2E could not quantize the chain for {engine}: {first_line(e)[:300]}") from None
    prog = lower_program(engine, source, input_shape, batch, convs=_conv_precisions(source))
    if table_x is not None:
        prog.layers = layer_table(chain, module, source, table_x, batch)
    return prog


_QDQ = ("quantize_per", "dequantize_per")  # PT2E's quantize / dequantize ops, between a conv and what uses it


def _compared_nodes(graph_module) -> list:
    """The node whose output stands for each conv of the chain, in graph order: the add that consumes it (through
    any quantize/dequantize pair) for a unit-residual conv or a projection's two convs, else the conv itself."""
    nodes = []
    for node in graph_module.graph.nodes:
        if node.op != "call_function" or "conv2d" not in str(node.target):
            continue
        user, seen = node, 0
        while len(user.users) == 1 and seen < 4:
            user, seen = next(iter(user.users)), seen + 1
            if not any(q in str(user.target) for q in _QDQ):
                break
        compared = user if "add" in str(user.target) else node
        if compared not in nodes:  # a projection's two convs meet in one add
            nodes.append(compared)
    return nodes


def _node_outputs(graph_module, x: np.ndarray, batch: int) -> list[np.ndarray]:
    """Each compared node's output (`_compared_nodes`) on the images `x`, run in PyTorch in the graph's batch."""
    wanted = _compared_nodes(graph_module)
    index = {n: i for i, n in enumerate(wanted)}
    found: list[list[np.ndarray]] = [[] for _ in wanted]

    class Recorder(torch.fx.Interpreter):
        def run_node(self, n):
            out = super().run_node(n)
            if n in index:
                found[index[n]].append(out.detach().double().numpy())
            return out

    with torch.no_grad():
        for i in range(0, len(x) - batch + 1, batch):
            Recorder(graph_module).run(torch.from_numpy(np.ascontiguousarray(x[i:i + batch], dtype=np.float32)))
    return [np.concatenate(f) for f in found]


def layer_table(chain: nn.Sequential, module: nn.Module, converted, x: np.ndarray, batch: int = 1):
    """The proof's per-conv rows for an edge program: each conv's output (the add's, for a unit-residual conv
    or a projection) in the PT2E graph as quantized, run in PyTorch, against the same graph in float, on `x`
    (the delegate's own intermediate tensors cannot be read); its form, its weights' int8 SQNR and its identity
    dominance from the folded chain. Rows are matched to the chain's convs in order; [] when they do not match."""
    from .graph import identity_dominance, weight_sqnr_db
    from .int8 import PLAIN, RESIDUAL
    from .proof import LayerError, sqnr_db

    float_graph = torch.export.export(module.eval(), (torch.zeros(batch, *x.shape[1:]),)).module()
    ref, got = _node_outputs(float_graph, x, batch), _node_outputs(converted, x, batch)
    convs = [(n, m) for n, m in chain.named_children() if isinstance(m, nn.Conv2d)]
    if not (len(ref) == len(got) == len(convs)):
        return []
    split = {UnitResidual: RESIDUAL, Projection: PROJECTION}  # the forms that quantize R and keep the diagonal
    forms = [split.get(type(m), PLAIN) for m in module.children() if isinstance(m, (nn.Conv2d, *split))]
    rows = []
    for (name, conv), r, g, kind in zip(convs, ref, got, forms):
        w = conv.weight.detach().double().numpy()
        rows.append(LayerError(name, kind, sqnr_db(r, g), weight_sqnr_db(w, "plain" if kind == PLAIN else "split"),
                               float(np.median(identity_dominance(w)))))
    return rows

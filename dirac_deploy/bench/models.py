"""What a benchmark compares: the folded chain, what a user could run instead, and a ResNet of matching size.

Variants:
- `folded`: this project's plain chain (eager / compiled in PyTorch; its audited ONNX export on ONNX backends).
- `folded-absorbed` (DiracNet v1 only): the same fold with NCReLU absorbed into the convs (pure conv-ReLU).
- `unfolded-as-trained`: the DiracNet as trained, eager; on ONNX backends its op-for-op graph (exporter
  optimizer off, no onnxsim), which no user deploys but which shows what the runtime's optimizer removes.
- `unfolded-exported`: what a user does without this project: the unfolded model through `torch.onnx.export`
  with its defaults (optimizer on) and onnxsim. ONNX backends only.
- `resnet`: a ResNet of matching size (ImageNet stem: ResNet-18/34 at the same widths; CIFAR stem: He et al.'s
  CIFAR ResNet with the same widths and conv count), BN folded as well (eager: torch.fx's conv-BN fusion;
  ONNX: exporter defaults + onnxsim), so both sides of the comparison are folded.
`torch.compile` is a backend, so "unfolded compiled" is the `unfolded-as-trained` row of backend
`torch-compile`. The time each ONNX graph took to produce is recorded (`export_s`).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from ..artifacts.plain import PlainArtifact
from ..artifacts.provenance import Provenance
from ..checkpoint import LoadOptions
from ..errors import DiracDeployError
from ..export import DEFAULT_OPSET
from ..folding.fold import fold
from ..models.cifar_resnet import cifar_resnet
from ..models.dirac import DiracNet
from ..models.resnet import resnet
from ..models.scaled_identity import ScaledIdentityNet
from ..opener import open_artifact
from ..spec import DiracNetSpec, imagenet_spec
from ..summary import count_flops, count_parameters

FOLDED, ABSORBED, AS_TRAINED, EXPORTED, RESNET = ("folded", "folded-absorbed", "unfolded-as-trained",
                                                  "unfolded-exported", "resnet")
VARIANTS = (FOLDED, ABSORBED, AS_TRAINED, EXPORTED, RESNET)
ALTERNATIVES = (AS_TRAINED, EXPORTED)  # what a user could run instead of the folded chain


@dataclass
class Variant:
    name: str
    model: nn.Module | None = None  # what PyTorch backends run (None: an ONNX-only or unavailable variant)
    onnx: object = None  # onnx.ModelProto the ONNX backends run, built on demand
    flops: int = 0
    params: int = 0
    missing: str = ""  # why the variant is unavailable for this MODEL
    export_s: float | None = None  # seconds to produce the ONNX graph (what a user pays once)
    description: str = ""


@dataclass
class BenchModels:
    description: str
    input_shape: tuple[int, int, int]
    baseline: str  # the ResNet's name, or why there is none
    variants: dict[str, Variant]
    provenance: Provenance = field(default_factory=Provenance)  # MODEL's (normalization, source) when one was given


@torch.no_grad()
def calibrate_bn(model: nn.Module, input_shape, batches: int = 2, batch: int = 4, seed: int = 0) -> nn.Module:
    """Give random-weight BN layers realistic running statistics: a cumulative average over random images."""
    gen = torch.Generator().manual_seed(seed)
    bns = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    for m in bns:
        m.reset_running_stats()
        m.momentum = None
    model.train()
    for _ in range(batches):
        model(torch.randn(batch, *input_shape, generator=gen))
    for m in bns:
        m.momentum = 0.1
    return model.eval()


def _timed_onnx(build) -> tuple[object, float]:
    t0 = time.perf_counter()
    model = build()
    return model, time.perf_counter() - t0


def onnx_as_trained(model: nn.Module, input_shape) -> object:
    """Exporter optimizations off, no onnxsim: the graph computes what the eager model computes, op for op."""
    from ..export.onnx import to_onnx_proto

    return to_onnx_proto(model, torch.zeros(2, *input_shape), opset=DEFAULT_OPSET, optimize=False)


def onnx_user_default(model: nn.Module, input_shape) -> object:
    """What a user gets without this project: torch.onnx.export's defaults (optimizer on), then onnxsim."""
    from ..export.onnx import check_graph, simplify, to_onnx_proto

    return simplify(check_graph(to_onnx_proto(model, torch.zeros(2, *input_shape), opset=DEFAULT_OPSET,
                                              optimize=True)))


def matched_resnet(spec, input_shape, classes) -> tuple[nn.Module | None, str]:
    """A ResNet of matching size for `spec`, or (None, why not)."""
    if input_shape[0] != 3 and spec is None:
        return None, f"no ResNet baseline for {input_shape[0]}-channel inputs of an unknown architecture"
    if not isinstance(spec, DiracNetSpec):
        return None, "no matched ResNet for this architecture (only DiracNets have one)"
    if spec.stem == "imagenet":
        depth = spec.depth
        if depth not in (18, 34):
            return None, f"no ResNet-{depth} baseline (ResNet-18/34 match DiracNet-18/34)"
        return resnet(depth, classes, spec.widths, spec.in_channels), f"ResNet-{depth}" + (
            "" if spec.widths == (64, 128, 256, 512) else f" at widths {list(spec.widths)}")
    n = spec.convs_per_group[0] // 2
    if len(spec.widths) != 3 or any(c != 2 * n for c in spec.convs_per_group):
        return None, "no CIFAR ResNet matches this DiracNet's group structure"
    depth = 6 * n + 2
    return (cifar_resnet(depth, spec.widths, classes, spec.in_channels),
            f"CIFAR ResNet-{depth} at widths {list(spec.widths)} (He et al.)")


def _fuse_bn(model: nn.Module) -> nn.Module:
    import torch.fx.experimental.optimization as fx_opt

    return fx_opt.fuse(model.eval())


def build_models(model_path: str | Path | None, depth: int, options: LoadOptions | None = None,
                 variants: tuple[str, ...] = VARIANTS, onnx: bool = True) -> BenchModels:
    """Default: ImageNet DiracNet-`depth` with calibrated BN; else MODEL (a checkpoint or plain.pth).

    `onnx=False` builds no ONNX graphs (no ONNX backend asked for, or ONNX Runtime not installed).
    """
    options = options or LoadOptions()
    if model_path is None:
        spec = imagenet_spec(depth)
        torch.manual_seed(0)  # the same random net in every run, so runs can be compared
        random_net = DiracNet(spec)
        calibrate_bn(random_net, (3, 224, 224))  # in place
        unfolded: DiracNet | ScaledIdentityNet | None = random_net
        plain, provenance, absorbed = fold(random_net).plain, Provenance(), None
        description = f"{spec.name}, random weights, BN calibrated on random images"
        input_shape, classes = (3, 224, 224), spec.num_classes
    else:
        loaded = open_artifact(model_path, options)
        if not isinstance(loaded, PlainArtifact):
            raise DiracDeployError(f"{model_path} is not a PyTorch file; bench times the PyTorch chain and its ONNX "
                                   f"export against the alternatives, so give the plain.pth or checkpoint")
        plain, provenance, unfolded = loaded.plain, loaded.provenance, loaded.unfolded
        input_shape, classes = loaded.input_shape, loaded.num_classes
        spec = loaded.fold.spec if loaded.fold is not None else _spec_from(provenance)
        description = f"{loaded.name} from {Path(model_path).name} ({loaded.source})"
        absorbed = None  # the pure conv-ReLU form of a v1 fold, beside the default one that keeps NCReLU
        if (isinstance(spec, DiracNetSpec) and spec.version == 1 and unfolded is not None and ABSORBED in variants
                and options.ncrelu == "keep"):
            absorbed = fold(unfolded, ncrelu="absorb").plain
    out: dict[str, Variant] = {}

    def add(name, model, make_onnx, description, missing=""):
        if name not in variants:
            return
        if model is None:
            out[name] = Variant(name, missing=missing, description=description)
            return
        graph, seconds = (None, None) if not onnx or make_onnx is None else _timed_onnx(make_onnx)
        out[name] = Variant(name, model, graph, count_flops(model, *input_shape[:2]), count_parameters(model),
                            export_s=seconds, description=description)

    def folded_onnx(chain):
        from ..export.onnx import export_onnx

        return lambda: export_onnx(chain, None, input_shape=input_shape, provenance=provenance,
                                   check_batches=(1,)).model

    add(FOLDED, plain, folded_onnx(plain), "this project's folded chain; ONNX: `dirac-deploy export`")
    if absorbed is not None:
        add(ABSORBED, absorbed, folded_onnx(absorbed), "the v1 fold with NCReLU absorbed (`ncrelu='absorb'`): "
                                                       "conv-ReLU only, twice the outputs before each NCReLU")
    unfolded_missing = ("MODEL is already folded; pass the checkpoint it was folded from to time the unfolded "
                        "model")
    add(AS_TRAINED, unfolded, unfolded is not None and (lambda: onnx_as_trained(unfolded, input_shape)),
        "the DiracNet as trained; ONNX: op for op (exporter optimizer off, no onnxsim)", unfolded_missing)
    if EXPORTED in variants:
        if unfolded is None:
            out[EXPORTED] = Variant(EXPORTED, missing=unfolded_missing)
        elif onnx:
            graph, seconds = _timed_onnx(lambda: onnx_user_default(unfolded, input_shape))
            out[EXPORTED] = Variant(EXPORTED, None, graph, count_flops(unfolded, *input_shape[:2]),
                                    count_parameters(unfolded), export_s=seconds,
                                    description="the unfolded model through torch.onnx.export defaults + onnxsim")
    base, baseline = matched_resnet(spec, input_shape, classes)
    if base is not None:
        base = _fuse_bn(calibrate_bn(base, input_shape))
    add(RESNET, base, base is not None and (lambda: onnx_user_default(base, input_shape)),
        f"{baseline}, BN folded (eager: torch.fx fusion; ONNX: exporter defaults + onnxsim)", baseline)
    return BenchModels(description, input_shape, baseline, out, provenance)


def _spec_from(provenance: Provenance):
    """The DiracNet spec a plain file records (for its matched ResNet), or None."""
    if not provenance.spec:
        return None
    try:
        return DiracNetSpec.from_dict(dict(provenance.spec))
    except (TypeError, ValueError, KeyError):
        return None


def peak_conv() -> tuple[nn.Module, tuple[int, int, int], int, int]:
    """The practical-peak probe: one 3x3 conv, 256->256 channels, 56x56, batch 8. Returns (model, shape, batch, flops)."""
    conv = nn.Conv2d(256, 256, 3, padding=1).eval()
    shape, batch = (256, 56, 56), 8
    return conv, shape, batch, 2 * batch * 256 * 256 * 9 * 56 * 56

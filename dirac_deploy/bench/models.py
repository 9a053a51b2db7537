"""The three variants a benchmark compares: unfolded DiracNet, its folded chain, and a ResNet of matching depth."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import onnx
import torch
from torch import nn

from ..checkpoint import LoadOptions
from ..errors import DiracDeployError
from ..export.onnx import DEFAULT_OPSET, export_onnx, to_onnx_proto
from ..folding.fold import fold
from ..models.dirac import DiracNet
from ..models.resnet import resnet
from ..pipeline import load_model
from ..spec import imagenet_spec
from ..summary import count_flops

VARIANTS = ("unfolded", "folded", "resnet")


@dataclass
class Variant:
    name: str
    model: nn.Module | None  # None: not available for this MODEL (reason in `missing`)
    onnx: onnx.ModelProto | None = None
    flops: int = 0
    missing: str = ""


@dataclass
class BenchModels:
    description: str
    input_shape: tuple[int, int, int]
    resnet_depth: int
    variants: dict[str, Variant]


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


def _onnx_as_trained(model: nn.Module, input_shape) -> onnx.ModelProto:
    # Exporter optimizations off: the graph computes what the eager model computes, op for op.
    return to_onnx_proto(model, torch.zeros(2, *input_shape), opset=DEFAULT_OPSET, optimize=False)


def build_models(model_path: str | Path | None, depth: int, options: LoadOptions | None = None,
                 variants: tuple[str, ...] = VARIANTS) -> BenchModels:
    """Default: ImageNet DiracNet-`depth` with calibrated BN; else MODEL (plain.pth or checkpoint)."""
    if model_path is None:
        spec = imagenet_spec(depth)
        unfolded = calibrate_bn(DiracNet(spec), (3, 224, 224))
        plain, meta = fold(unfolded).plain, {}
        description = f"{spec.name}, random weights, BN calibrated on random images"
        input_shape, classes, resnet_depth = (3, 224, 224), spec.num_classes, depth
    else:
        loaded = load_model(model_path, options)
        if loaded.plain is None:
            raise DiracDeployError(f"{model_path} is an ONNX file; bench runs the PyTorch chain and its ONNX export, "
                                   f"so give the plain.pth or checkpoint it came from")
        plain, meta, unfolded = loaded.plain, loaded.meta, loaded.unfolded
        input_shape, classes = loaded.input_shape, loaded.num_classes
        arch = meta.get("architecture", {})
        resnet_depth = 34 if sum(arch.get("convs_per_group", ())) + 2 >= 34 else 18
        description = f"{loaded.name} from {Path(model_path).name} ({loaded.source})"
    out: dict[str, Variant] = {}
    if "folded" in variants:
        exported = export_onnx(plain, None, input_shape=input_shape, meta=meta, check_batches=(1,))
        out["folded"] = Variant("folded", plain, exported.model, count_flops(plain, *input_shape[:2]))
    if "unfolded" in variants:
        if unfolded is None:
            out["unfolded"] = Variant("unfolded", None, missing="MODEL is already folded; pass the checkpoint it "
                                                                "was folded from to benchmark the unfolded model")
        else:
            out["unfolded"] = Variant("unfolded", unfolded, _onnx_as_trained(unfolded, input_shape),
                                      count_flops(unfolded, *input_shape[:2]))
    if "resnet" in variants:
        if input_shape[0] != 3:
            out["resnet"] = Variant("resnet", None, missing=f"the ResNet baseline takes 3 input channels, MODEL {input_shape[0]}")
        else:
            base = calibrate_bn(resnet(resnet_depth, classes), input_shape)
            out["resnet"] = Variant("resnet", base, _onnx_as_trained(base, input_shape),
                                    count_flops(base, *input_shape[:2]))
    return BenchModels(description, input_shape, resnet_depth, out)


def peak_conv() -> tuple[nn.Module, tuple[int, int, int], int, int]:
    """The practical-peak probe: one 3x3 conv, 256->256 channels, 56x56, batch 8. Returns (model, shape, batch, flops)."""
    conv = nn.Conv2d(256, 256, 3, padding=1).eval()
    shape, batch = (256, 56, 56), 8
    return conv, shape, batch, 2 * batch * 256 * 256 * 9 * 56 * 56

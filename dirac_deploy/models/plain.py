"""The folded network: a plain chain of Conv2d, ReLU, MaxPool2d, global average pool and Linear.

Built from a list of `LayerSpec`s so that the whole network (structure + weights) can be saved as plain
data and rebuilt without unpickling code.
"""

from __future__ import annotations

from collections import OrderedDict

from torch import nn

from ..spec import DiracNetSpec, LayerSpec


def _build_layer(layer: LayerSpec) -> nn.Module:
    a = layer.args
    if layer.kind == "conv":
        return nn.Conv2d(a["in_channels"], a["out_channels"], a["kernel_size"], stride=a.get("stride", 1),
                         padding=a.get("padding", 0), bias=a.get("bias", True))
    if layer.kind == "relu":
        return nn.ReLU()
    if layer.kind == "maxpool":
        return nn.MaxPool2d(a["kernel_size"], stride=a.get("stride"), padding=a.get("padding", 0))
    if layer.kind == "gap":
        return nn.AdaptiveAvgPool2d(1)
    if layer.kind == "flatten":
        return nn.Flatten(1)
    if layer.kind == "linear":
        return nn.Linear(a["in_features"], a["out_features"])
    raise ValueError(f"unknown layer kind {layer.kind!r} in layer {layer.name!r}")


class PlainNet(nn.Sequential):
    """A conv-ReLU chain; `layers` keeps the specs it was built from."""

    def __init__(self, layers: list[LayerSpec]):
        super().__init__(OrderedDict((layer.name, _build_layer(layer)) for layer in layers))
        self.layers = list(layers)


def plain_layers(spec: DiracNetSpec) -> list[LayerSpec]:
    """The layer list of the folded chain for a DiracNet spec (structure only).

    The chain is canonical: every conv is followed by its ReLU and max-pools come after the ReLU. Moving a
    max-pool past a ReLU is exact (max commutes with any non-decreasing map, and max-pool pads with -inf),
    and conv->ReLU adjacency is what ONNX Runtime, cuDNN and TensorRT fuse. The CIFAR stem's ReLU followed by
    the first block's pre-activation ReLU is a single ReLU.
    """
    w0 = spec.widths[0]
    if spec.stem == "imagenet":
        layers = [LayerSpec("conv", "stem_conv", dict(in_channels=spec.in_channels, out_channels=w0, kernel_size=7,
                                                      stride=2, padding=3)),
                  LayerSpec("relu", "stem_relu"),
                  LayerSpec("maxpool", "stem_pool", dict(kernel_size=3, stride=2, padding=1))]
    else:
        layers = [LayerSpec("conv", "stem_conv", dict(in_channels=spec.in_channels, out_channels=w0, kernel_size=3,
                                                      stride=1, padding=1)),
                  LayerSpec("relu", "stem_relu")]
    prev = w0
    for g, (width, count) in enumerate(zip(spec.widths, spec.convs_per_group)):
        if g > 0:
            layers.append(LayerSpec("maxpool", f"group{g}_pool", dict(kernel_size=2, stride=2, padding=0)))
        for b in range(count):
            cin = prev if b == 0 else width
            layers.append(LayerSpec("conv", f"group{g}_block{b}_conv",
                                    dict(in_channels=cin, out_channels=width, kernel_size=3, stride=1, padding=1)))
            layers.append(LayerSpec("relu", f"group{g}_block{b}_relu"))
        prev = width
    layers += [LayerSpec("gap", "pool"), LayerSpec("flatten", "flatten"),
               LayerSpec("linear", "fc", dict(in_features=prev, out_features=spec.num_classes))]
    return layers

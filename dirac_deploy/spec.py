"""Architecture descriptions: what a checkpoint holds, independent of its file layout.

`DiracNetSpec` describes the unfolded DiracNet v2 family; `LayerSpec` is one layer of a folded plain
chain. Both are plain data (ints, floats, strings, tuples) so they survive `torch.load(weights_only=True)`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

# The tensor names of every exported, served and benchmarked plain chain: one image batch in, logits out.
INPUT_NAME, OUTPUT_NAME = "input", "logits"
# Beyond this, one image's activations alone take gigabytes; no DiracNet was trained at such sizes.
MAX_INPUT_SIZE = 2048

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# The original train.py normalizes CIFAR by (125.3, 123.0, 113.9) / 255 and (63.0, 62.1, 66.7) / 255.
CIFAR_MEAN = (0.49137, 0.48235, 0.44667)
CIFAR_STD = (0.24706, 0.24353, 0.26157)


@dataclass(frozen=True)
class DiracNetSpec:
    """A DiracNet v2 as the original training code builds it.

    Attributes:
        stem: "imagenet" (conv7x7/2 -> BN -> maxpool 3/2/1) or "cifar" (conv3x3 -> BN -> ReLU).
        widths: output channels of each group (64,128,256,512 x width for ImageNet; 16,32,64 x width for CIFAR).
        convs_per_group: number of Dirac blocks in each group (2 x blocks[g] in the original code).
        num_classes: rows of the fc layer.
        in_channels: input image channels.
        per_channel_scales: alpha/beta are vectors of length `out` (True, v2 release) or scalars (False).
        bn_eps: batch-norm epsilon of the source (F.batch_norm default 1e-5 in the original code).
        input_size: spatial size the network is meant for (metadata; the model accepts other sizes).
        mean, std: input normalization the network was trained with (metadata).
        version: 2 (master: ReLU, per-channel scales) or 1 (branch v1: NCReLU, convs over 2x the input
            channels, tiled delta, no ReLU before the final average pool).
        per_channel_beta: beta's shape when it differs from alpha's (the released v1 files: scalar alpha
            "gamma", per-channel beta); None means the same as `per_channel_scales`.
        final_relu: a ReLU before the global average pool. v2 has one (master, since commit 93d38e3); the v1
            branch's diracnet.py has none; the v1 notebook that documents the released ImageNet models has one.
            None: decided by the version (v2 yes, v1 no); the loaders set it per layout.
    """

    stem: str
    widths: tuple[int, ...]
    convs_per_group: tuple[int, ...]
    num_classes: int
    in_channels: int = 3
    per_channel_scales: bool = True
    bn_eps: float = 1e-5
    input_size: int = 224
    mean: tuple[float, ...] = IMAGENET_MEAN
    std: tuple[float, ...] = IMAGENET_STD
    version: int = 2
    per_channel_beta: bool | None = None
    final_relu: bool | None = None

    def __post_init__(self) -> None:
        if self.final_relu is None:  # frozen: set the resolved default once
            object.__setattr__(self, "final_relu", self.version == 2)
        if self.stem not in ("imagenet", "cifar"):
            raise ValueError(f"stem must be 'imagenet' or 'cifar', got {self.stem!r}")
        if len(self.widths) != len(self.convs_per_group) or not self.widths:
            raise ValueError("widths and convs_per_group must be non-empty and of equal length")
        if self.version not in (1, 2):
            raise ValueError(f"DiracNet version must be 1 or 2, got {self.version}")

    @property
    def depth(self) -> int:
        """Depth as the paper names it: ImageNet counts convs + fc (18, 34); CIFAR uses 6n+4."""
        if self.stem == "imagenet":
            return sum(self.convs_per_group) + 2
        return sum(self.convs_per_group) + 4

    @property
    def width(self) -> float:
        """Width multiplier relative to the original base widths."""
        base = 64 if self.stem == "imagenet" else 16
        return self.widths[0] / base

    @property
    def name(self) -> str:
        kind = "ImageNet" if self.stem == "imagenet" else "CIFAR"
        v1 = " v1 (NCReLU)" if self.version == 1 else ""
        return f"DiracNet{v1}-{self.depth}-{self.width:g} ({kind} stem, {self.num_classes} classes)"

    def summary_rows(self, folded: bool = False) -> list[tuple[str, str]]:
        """Rows for `inspect`. An already-folded file says nothing about its scales or BN eps: not shown."""
        rows = [("groups", ", ".join(f"{n} x {w}ch" for n, w in zip(self.convs_per_group, self.widths))),
                ("forward", f"{'NCReLU' if self.version == 1 else 'ReLU'} blocks, "
                            f"{'a' if self.final_relu else 'no'} ReLU before the average pool")]
        if folded:
            return rows
        beta = self.per_channel_scales if self.per_channel_beta is None else self.per_channel_beta
        scales = (f"alpha {'per channel' if self.per_channel_scales else 'scalar'}, "
                  f"beta {'per channel' if beta else 'scalar'}")
        return rows + [("scales", scales), ("BN eps", f"{self.bn_eps:g}")]

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "DiracNetSpec":
        fields: dict[str, Any] = {k: (tuple(v) if isinstance(v, list) else v) for k, v in d.items()}
        return cls(**fields)


def imagenet_spec(depth: int = 18, width: float = 1.0, num_classes: int = 1000, **kw) -> DiracNetSpec:
    """DiracNet-18/34 as in the paper: blocks [2,2,2,2] / [3,4,6,3], two Dirac convs per block."""
    blocks = {18: (2, 2, 2, 2), 34: (3, 4, 6, 3)}
    if depth not in blocks:
        raise ValueError(f"ImageNet DiracNet depth must be 18 or 34, got {depth}")
    widths = tuple(int(w * width) for w in (64, 128, 256, 512))
    return DiracNetSpec("imagenet", widths, tuple(2 * b for b in blocks[depth]), num_classes, **kw)


def cifar_spec(depth: int = 34, width: float = 1.0, num_classes: int = 10, **kw) -> DiracNetSpec:
    """CIFAR DiracNet-(6n+4): three groups of 2n Dirac convs, widths 16,32,64 x width."""
    if depth < 10 or (depth - 4) % 6:
        raise ValueError(f"CIFAR DiracNet depth must be 6n+4 with n >= 1, got {depth}")
    n = (depth - 4) // 6
    widths = tuple(int(w * width) for w in (16, 32, 64))
    kw.setdefault("input_size", 32)
    kw.setdefault("mean", CIFAR_MEAN)
    kw.setdefault("std", CIFAR_STD)
    return DiracNetSpec("cifar", widths, (2 * n,) * 3, num_classes, **kw)


@dataclass(frozen=True)
class LayerSpec:
    """One layer of a plain chain: kind in {conv, relu, maxpool, gap, flatten, linear}.

    `name` is a legal module name (no dots); `args` holds the constructor arguments.
    """

    kind: str
    name: str
    args: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {"kind": self.kind, "name": self.name, "args": dict(self.args)}

    @classmethod
    def from_dict(cls, d: dict) -> "LayerSpec":
        return cls(d["kind"], d["name"], dict(d.get("args", {})))


SHORTCUTS = ("scaled", "preact", "two_conv")


@dataclass(frozen=True)
class ScaledIdentitySpec:
    """A residual net whose shortcuts are scaled identities, as phasing-out / variable-activation methods train.

    Stem conv3x3 -> BN -> act; each group g > 0 starts with max-pool 2 and a transition conv3x3 -> BN -> act
    (the width changes, so no shortcut); then `blocks_per_group[g]` residual blocks; GAP -> fc. Every act is
    a variable activation alpha * relu(z) + (1 - alpha) * z with its own learned alpha.

    Attributes:
        shortcut: the block form. "scaled": x' = act(BN(W * x) + s * x) (one conv; folds exactly).
            "preact": x' = BN(W * relu(x)) + s * x (the shortcut carries x while the conv sees relu(x)).
            "two_conv": x' = act(BN2(W2 * act(BN1(W1 * x))) + s * x) (ResNet's shortcut of length 2).
            The last two cannot become a same-width chain; `fold` refuses them naming the block.
        per_channel_shortcut: s is a vector of length C (True) or a scalar (False).
    """

    widths: tuple[int, ...]
    blocks_per_group: tuple[int, ...]
    num_classes: int
    in_channels: int = 3
    shortcut: str = "scaled"
    per_channel_shortcut: bool = True
    bn_eps: float = 1e-5
    input_size: int = 32
    mean: tuple[float, ...] = CIFAR_MEAN
    std: tuple[float, ...] = CIFAR_STD

    def __post_init__(self) -> None:
        if self.shortcut not in SHORTCUTS:
            raise ValueError(f"shortcut must be one of {SHORTCUTS}, got {self.shortcut!r}")
        if len(self.widths) != len(self.blocks_per_group) or not self.widths:
            raise ValueError("widths and blocks_per_group must be non-empty and of equal length")

    @property
    def depth(self) -> int:
        """Convolutions + fc (a two-conv block counts two)."""
        per_block = 2 if self.shortcut == "two_conv" else 1
        return 1 + (len(self.widths) - 1) + per_block * sum(self.blocks_per_group) + 1

    @property
    def name(self) -> str:
        return f"ScaledIdentityNet-{self.depth} ({self.shortcut} shortcuts, {self.num_classes} classes)"

    def summary_rows(self, folded: bool = False) -> list[tuple[str, str]]:  # noqa: ARG002 (DiracNetSpec's signature)
        return [("groups", ", ".join(f"{n} blocks x {w}ch" for n, w in zip(self.blocks_per_group, self.widths))),
                ("shortcut", f"{self.shortcut}, s {'per channel' if self.per_channel_shortcut else 'scalar'}"),
                ("BN eps", f"{self.bn_eps:g}")]

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "ScaledIdentitySpec":
        fields: dict[str, Any] = {k: (tuple(v) if isinstance(v, list) else v) for k, v in d.items()}
        return cls(**fields)

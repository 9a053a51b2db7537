"""LoadOptions: what a checkpoint cannot tell, as the user gives it (torch-free: `serve` of an exported .onnx
builds one without PyTorch installed)."""

from __future__ import annotations

import math
from dataclasses import dataclass

from .errors import OptionError
from .spec import MAX_INPUT_SIZE


@dataclass
class LoadOptions:
    """What a checkpoint cannot tell: trust, BN eps, the forward's final ReLU, metadata for the folded artifact,
    and the form a v1 net folds to.

    Attributes:
        trust_checkpoint: allow full unpickling (arbitrary code); off by default.
        bn_eps: the source's batch-norm epsilon (default 1e-5, the original code's).
        input_size, mean, std: recorded in the artifact (the checkpoints of the original code store none).
        final_relu: force (True/False) the ReLU before the average pool; None: what the layout implies.
        ncrelu: v1 fold form, "keep" (NCReLU stays a layer; the authors' folded size) or "absorb" (a pure
            conv-ReLU chain whose convs before an NCReLU have twice the outputs).
    """

    trust_checkpoint: bool = False
    bn_eps: float | None = None
    input_size: int | None = None
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None
    final_relu: bool | None = None
    ncrelu: str = "keep"

    def __post_init__(self) -> None:
        if self.bn_eps is not None and not (math.isfinite(self.bn_eps) and 0 < self.bn_eps <= 1):
            raise OptionError(f"`bn_eps` {self.bn_eps!r}: batch-norm epsilon must be a finite number in (0, 1] "
                              f"(the original code uses 1e-5)")
        size = self.input_size
        if size is not None and not (isinstance(size, int) and 8 <= size <= MAX_INPUT_SIZE):
            raise OptionError(f"`input_size` {self.input_size!r}: must be an integer in 8..{MAX_INPUT_SIZE}")
        for name, values in (("mean", self.mean), ("std", self.std)):
            if values is None:
                continue
            if not values or not all(math.isfinite(v) for v in values) or (name == "std" and min(values) <= 0):
                raise OptionError(f"--{name} {','.join(map(str, values))}: expected finite numbers"
                                  f"{', all > 0' if name == 'std' else ''}, one per input channel")
        if self.ncrelu not in ("keep", "absorb"):
            raise OptionError(f"ncrelu must be 'keep' or 'absorb', got {self.ncrelu!r}")

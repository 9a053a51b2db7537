"""dirac-deploy: fold DiracNets into verified plain conv-ReLU chains, export, benchmark and serve them.

Public API (the CLI is a thin layer over these):
    fold(model)                     DiracNet (eval) -> FoldResult(plain, proof)
    fold_checkpoint(path, output)   any supported checkpoint -> verified plain.pth
    inspect_checkpoint(path)        what a checkpoint holds, without folding
    load_checkpoint(path)           checkpoint -> LoadedCheckpoint (unfolded model + spec)
    load_plain(path)                plain.pth -> nn.Module (eval mode)
    fold_module(model, example)     any nn.Module: Dirac convs (and their BNs) -> plain Conv2d, verified
"""

__version__ = "0.1.0"

from .checkpoint import LoadedCheckpoint, LoadOptions, load_checkpoint
from .errors import (CheckpointError, DiracDeployError, EquivalenceError, MissingDependencyError,
                     OutputPathError, UnfoldableError, UnknownLayoutError, UnsafeCheckpointError)
from .fold.fold import FoldResult, fold
from .fold.module import DiracParametrization, ModuleFoldResult, fold_module
from .fold.from_checkpoint import FoldReport, InspectReport, fold_checkpoint, inspect_checkpoint
from .fold.verify import Proof
from .models.dirac import DiracConv2d, DiracNet
from .models.plain import PlainNet
from .models.scaled_identity import ScaledIdentityNet
from .models.resnet import resnet
from .plainfile import load_plain, read_plain, save_plain
from .spec import DiracNetSpec, ScaledIdentitySpec, cifar_spec, imagenet_spec

__all__ = [
    "CheckpointError", "DiracConv2d", "DiracParametrization", "ModuleFoldResult", "ScaledIdentityNet",
    "ScaledIdentitySpec", "UnfoldableError", "fold_module", "DiracDeployError", "DiracNet", "DiracNetSpec", "EquivalenceError",
    "FoldReport", "FoldResult", "InspectReport", "LoadOptions", "LoadedCheckpoint", "MissingDependencyError",
    "OutputPathError", "PlainNet", "Proof", "UnknownLayoutError", "UnsafeCheckpointError", "cifar_spec",
    "fold", "fold_checkpoint", "imagenet_spec", "inspect_checkpoint", "load_checkpoint", "load_plain",
    "read_plain", "resnet", "save_plain",
]

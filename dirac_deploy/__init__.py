"""dirac-deploy: fold DiracNets into verified plain conv-ReLU chains, export, benchmark and serve them.

Public API (the CLI is a thin layer over these):
    open_artifact(path)             any checkpoint, plain.pth, .onnx or IR -> PlainArtifact (a verified plain
                                    chain: checkpoints are folded), OnnxArtifact or IrArtifact
                                    (`load_model` is the same function under its earlier name)
    fold(model)                     DiracNet (eval) -> FoldResult(plain, proof)
    fold_checkpoint(path, output)   any supported checkpoint -> verified plain.pth
    inspect_checkpoint(path)        what a checkpoint holds, without folding
    load_checkpoint(path)           checkpoint -> LoadedCheckpoint (unfolded model + spec)
    load_plain(path)                plain.pth -> nn.Module (eval mode)
    fold_module(model, example)     any nn.Module: Dirac convs (and their BNs) -> plain convs, verified
    export_onnx(plain, path, ...)   plain chain -> audited, parity-checked ONNX
    quantize_file(model, out, ...)  int8 / fp16 / bf16 artifact, proven on held-out data before it is written

Names are imported on first use (PEP 562), so `import dirac_deploy` is cheap and the torch-free parts of the
package (serving an exported .onnx) work without PyTorch installed.
"""

from __future__ import annotations

import importlib

__version__ = "0.1.0"

_EXPORTS = {
    "LoadedCheckpoint": "checkpoint", "LoadOptions": "checkpoint", "load_checkpoint": "checkpoint",
    "CheckpointError": "errors", "DiracDeployError": "errors", "EquivalenceError": "errors",
    "MissingDependencyError": "errors", "OutputPathError": "errors", "UnfoldableError": "errors",
    "UnknownLayoutError": "errors", "UnsafeCheckpointError": "errors", "ExportError": "errors",
    "FoldResult": "folding.fold", "fold": "folding.fold",
    "DiracParametrization": "folding.module", "ModuleFoldResult": "folding.module", "fold_module": "folding.module",
    "Proof": "folding.verify",
    "FoldReport": "pipeline", "InspectReport": "pipeline", "fold_checkpoint": "pipeline",
    "inspect_checkpoint": "pipeline", "load_model": "opener", "open_artifact": "opener",
    "inspect_file": "opener", "PlainArtifact": "artifacts.plain", "OnnxArtifact": "artifacts.onnx",
    "IrArtifact": "artifacts.ir", "Provenance": "artifacts.provenance",
    "DiracConv2d": "models.dirac", "DiracNet": "models.dirac", "PlainNet": "models.plain",
    "ScaledIdentityNet": "models.scaled_identity", "resnet": "models.resnet",
    "load_plain": "artifacts.plain", "read_plain": "artifacts.plain", "save_plain": "artifacts.plain",
    "DiracNetSpec": "spec", "ScaledIdentitySpec": "spec", "cifar_spec": "spec", "imagenet_spec": "spec",
    "export_onnx": "export.onnx", "quantize_file": "quantize.run",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'dirac_deploy' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(globals()) | set(_EXPORTS))

"""Optional heavy dependencies, imported where they are used, with an error naming the install command."""

from __future__ import annotations

import importlib

from .errors import MissingDependencyError

INSTALL = {
    "tensorrt": "pip install tensorrt-cu13  (TensorRT 11; needs an NVIDIA GPU machine that can reach NVIDIA's package index)",
    "fastapi": "pip install 'dirac-deploy[serve]'",
    "uvicorn": "pip install 'dirac-deploy[serve]'",
    "onnxconverter_common.float16": "pip install 'dirac-deploy[fp16]'  (onnxconverter-common)",
    "tritonclient.grpc.model_config_pb2": "pip install 'dirac-deploy[triton]'  (tritonclient[grpc] ships Triton's ModelConfig protobuf)",
}


def require(module: str):
    """Import `module` or raise MissingDependencyError with the command that installs it."""
    try:
        return importlib.import_module(module)
    except ImportError as e:
        hint = INSTALL.get(module, f"pip install {module.split('.')[0]}")
        raise MissingDependencyError(f"{module} is not available ({e}); install it with: {hint}") from None

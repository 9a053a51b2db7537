"""Optional dependencies, imported where they are used, with an error naming the extra that installs them.

`pip install dirac-deploy` alone folds and inspects checkpoints and benchmarks eager PyTorch; the extras add
the rest (README: Install). ONNX Runtime is an extra, not a base dependency, because the CPU package and
`onnxruntime-gpu` install the same module and conflict: `[export]` brings the CPU build, `[gpu]` the CUDA one.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys

from .errors import MissingDependencyError

INSTALL = {
    "onnxruntime": "pip install 'dirac-deploy[export]'  (or [gpu] for onnxruntime-gpu)",
    "onnxscript": "pip install 'dirac-deploy[export]'  (torch.onnx's exporter needs onnxscript)",
    "onnxsim": "pip install 'dirac-deploy[export]'  (onnxsim simplifies the exported graph)",
    "matplotlib": "pip install 'dirac-deploy[plot]'",
    "tensorrt": "pip install 'dirac-deploy[trt]'  (TensorRT 11, tensorrt-cu13; needs an NVIDIA GPU machine that "
                "can reach NVIDIA's package index)",
    "fastapi": "pip install 'dirac-deploy[serve]'",
    "uvicorn": "pip install 'dirac-deploy[serve]'",
    "grpc": "pip install 'dirac-deploy[serve]'  (gRPC serving uses tritonclient[grpc]'s stubs)",
    "onnxconverter_common.float16": "pip install 'dirac-deploy[fp16]'  (onnxconverter-common)",
    "tritonclient": "pip install 'dirac-deploy[triton]'  (tritonclient ships Triton's ModelConfig protobuf)",
    "openvino": "pip install 'dirac-deploy[openvino]'",
    "ray": "pip install 'dirac-deploy[ray]'  (Ray Serve, about 0.5 GB)",
    "nncf": "pip install 'dirac-deploy[openvino]'  (NNCF, OpenVINO's int8 quantizer)",
    "onnxruntime-gpu": "pip install 'dirac-deploy[gpu]'  (onnxruntime-gpu, in place of onnxruntime: the CUDA provider)",
    "PIL": "pip install pillow  (reading image files)",
    "torch": "pip install torch  (the CPU build: --index-url https://download.pytorch.org/whl/cpu)",
}


def install_hint(module: str) -> str:
    """The command that installs `module`, from the one table above."""
    return INSTALL.get(module, INSTALL.get(module.split(".")[0], f"pip install {module.split('.')[0]}"))


def not_installed(module: str, what: str | None = None) -> str:
    """'<what> is not installed (<the command>)': the one wording of a missing optional dependency."""
    return f"{what or module} is not installed ({install_hint(module)})"


def require(module: str):
    """Import `module` or raise MissingDependencyError with the command that installs it."""
    try:
        return importlib.import_module(module)
    except ImportError as e:
        hint = install_hint(module)
        raise MissingDependencyError(f"{module} is not available ({e}); install it with: {hint}") from None


def available(module: str) -> bool:
    """Whether `module` can be imported (without importing it)."""
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def model_config_pb2():
    """Triton's `ModelConfig` protobuf module from tritonclient, without gRPC.

    It lives in `tritonclient.grpc`, whose package `__init__` imports grpcio; the generated module itself needs
    only protobuf. Writing a config.pbtxt should not pull in gRPC, so when grpcio is missing the module is
    loaded from its file.
    """
    try:
        return importlib.import_module("tritonclient.grpc.model_config_pb2")
    except ImportError:
        pass
    spec = importlib.util.find_spec("tritonclient")
    if spec is None or not spec.submodule_search_locations:
        raise MissingDependencyError(f"tritonclient is not available; install it with: {INSTALL['tritonclient']}")
    name = "dirac_deploy._triton_model_config_pb2"
    if name in sys.modules:
        return sys.modules[name]
    path = f"{list(spec.submodule_search_locations)[0]}/grpc/model_config_pb2.py"
    try:
        file_spec = importlib.util.spec_from_file_location(name, path)
        module = importlib.util.module_from_spec(file_spec)
        file_spec.loader.exec_module(module)
    except (ImportError, OSError) as e:
        raise MissingDependencyError(f"Triton's ModelConfig protobuf cannot be loaded ({e}); install it with: "
                                     f"{INSTALL['tritonclient']}") from None
    sys.modules[name] = module
    return module

"""Optional dependencies, imported where they are used, with an error naming the extra that installs them.

The core install alone folds and inspects checkpoints and benchmarks eager PyTorch; the extras add
the rest (README: Install). ONNX Runtime is an extra, not a base dependency, because the CPU package and
`onnxruntime-gpu` install the same module and conflict: `[export]` brings the CPU build, `[gpu]` the CUDA one.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys

from .errors import MissingDependencyError


def _extra(extra: str, why: str = "") -> str:
    """How to add an extra. The package is not on PyPI: it installs from a clone or from a wheel built there
    (README: Quick start), so the hint names both."""
    return f"pip install '.[{extra}]' in a clone, or 'dirac_deploy-*.whl[{extra}]'" + (f"  ({why})" if why else "")


INSTALL = {
    "onnxruntime": _extra("export", "or [gpu] for onnxruntime-gpu"),
    "onnxscript": _extra("export", "torch.onnx's exporter needs onnxscript"),
    "onnxsim": _extra("export", "onnxsim simplifies the exported graph"),
    "matplotlib": _extra("plot"),
    "tensorrt": _extra("trt", "TensorRT 11, tensorrt-cu13; needs an NVIDIA GPU machine that can reach NVIDIA's "
                              "package index"),
    "fastapi": _extra("serve"),
    "uvicorn": _extra("serve"),
    "grpc": _extra("serve", "gRPC serving uses tritonclient[grpc]'s stubs"),
    "onnxconverter_common.float16": _extra("fp16", "onnxconverter-common"),
    "tritonclient": _extra("triton", "tritonclient ships Triton's ModelConfig protobuf"),
    "openvino": _extra("openvino"),
    "ray": _extra("ray", "Ray Serve, about 0.5 GB"),
    "executorch": _extra("executorch", "ExecuTorch 1.5.1 with torch 2.13.0, pinned together; about 0.6 GB; "
                                       "or make test-edge"),
    "ai_edge_litert": _extra("litert", "LiteRT's runtime and litert-torch 0.10.0, its converter; about 1.3 GB "
                                       "with jax; or make test-litert"),
    "litert_torch": _extra("litert", "litert-torch 0.10.0, LiteRT's converter, and LiteRT's runtime; about 1.3 GB "
                                     "with jax; or make test-litert"),
    "nncf": _extra("openvino", "NNCF, OpenVINO's int8 quantizer"),
    "onnxruntime-gpu": _extra("gpu", "onnxruntime-gpu, in place of onnxruntime: the CUDA provider"),
    "PIL": "pip install pillow  (reading image files)",
    "torch": "pip install 'torch>=2.11,<2.14'  (the CPU build: --index-url https://download.pytorch.org/whl/cpu)",
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

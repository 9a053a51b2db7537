"""Benchmark the folded chain against what a user could run instead, per backend and batch, in one run.

A backend is an engine (`runtimes.ENGINE_TABLE`) with settings: `BACKENDS` is the one table of them. The names
below are here, with no runtime imported, so the command line can list them without loading torch.
"""

from ..runtimes import ENGINE_TABLE

# backend -> (engine, the engine's runner options), in the order reports list them
BACKENDS: dict[str, tuple[str, dict]] = {
    "torch": ("torch", {}),
    "torch-compile": ("torch", {"compile": "default"}),
    "torch-compile-max": ("torch", {"compile": "max-autotune"}),
    "cuda-graph": ("torch", {"cuda_graph": True}),
    "onnxruntime": ("onnxruntime", {}),
    "onnxruntime-noopt": ("onnxruntime", {"optimized": False}),
    "openvino": ("openvino", {}),
    "executorch": ("executorch", {}),
    "litert": ("litert", {}),
    "tensorrt": ("tensorrt", {}),
}
CUDA_ONLY = ("torch-compile-max", "cuda-graph")  # backends only worth their setup on a GPU
TORCH_BACKENDS = tuple(b for b, (e, _) in BACKENDS.items() if "torch" in ENGINE_TABLE[e].reads)
ONNX_BACKENDS = tuple(b for b, (e, _) in BACKENDS.items() if "onnx" in ENGINE_TABLE[e].reads)
PROGRAM_BACKENDS = tuple(b for b, (e, _) in BACKENDS.items() if ENGINE_TABLE[e].lowered)  # lowered per batch
OPTIONAL_BACKENDS = ("openvino", "executorch", "litert")  # in the default set only where installed
CPU_BACKENDS = tuple(b for b, (e, _) in BACKENDS.items() if "cpu" in ENGINE_TABLE[e].devices and b not in CUDA_ONLY)
CUDA_BACKENDS = tuple(b for b, (e, _) in BACKENDS.items() if "cuda" in ENGINE_TABLE[e].devices)
ALL_BACKENDS = tuple(BACKENDS)
MAX_BENCH_BATCH = 1024  # one timed call at a larger batch would take minutes on a CPU and gigabytes of memory

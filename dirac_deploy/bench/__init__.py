"""Benchmark the folded chain against what a user could run instead, per backend and batch, in one run.

The names below are here, import-free, so the command line can list them without loading torch.
"""

TORCH_BACKENDS = ("torch", "torch-compile", "torch-compile-max", "cuda-graph")
ONNX_BACKENDS = ("onnxruntime", "onnxruntime-noopt", "openvino", "tensorrt")
CPU_BACKENDS = ("torch", "torch-compile", "onnxruntime", "onnxruntime-noopt", "openvino")
CUDA_BACKENDS = ("torch", "torch-compile", "torch-compile-max", "cuda-graph", "onnxruntime", "onnxruntime-noopt",
                 "tensorrt")
ALL_BACKENDS = TORCH_BACKENDS + ONNX_BACKENDS
MAX_BENCH_BATCH = 1024  # one timed call at a larger batch would take minutes on a CPU and gigabytes of memory

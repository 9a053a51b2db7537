"""Low-precision artifacts that keep the Dirac identity: int8 (identity-aware or naive), fp16, bf16, each
proven against the fp32 chain on held-out data before it is written (see `run`).

The names below are here, import-free, so the command line can list them without loading torch.
"""

from ..runtimes import LOWERED_ENGINES, ONNX_ENGINES

PRECISIONS = ("int8", "fp16", "bf16", "fp32")
METHODS = ("identity", "projection", "naive", "nncf", "cast", "hint", "none")
# the engines that run an ONNX graph (`runtimes.ENGINE_TABLE`; tensorrt: a QDQ ONNX for `export --trt`, never run
# here), and those that run a program lowered from the PyTorch chain (ExecuTorch)
TARGETS = ONNX_ENGINES + LOWERED_ENGINES
DEFAULT_MIN_SQNR_DB = 15.0  # see run.py
DEFAULT_EVAL_LIMIT = 2000
DEFAULT_CROP_FRACTION = 0.875  # torchvision's Resize(256) + CenterCrop(224); timm's default crop_pct
DEFAULT_MIN_SPEEDUP = 1.0  # see speed.py: never write an artifact slower than the fp32 chain on its runtime

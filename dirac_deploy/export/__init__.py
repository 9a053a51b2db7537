"""Export a plain chain to ONNX (audited, parity-checked), TensorRT engines and Triton model repositories.

The constants below are here, import-free, so the command line can show them without loading torch.
"""

MIN_OPSET = 18  # the dynamo exporter's floor
DEFAULT_OPSET = 20
MAX_PARITY_BATCH = 16  # the parity check's larger batch; bounded so a huge --batch-range OPT cannot exhaust memory

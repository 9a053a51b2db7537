"""Export a plain chain to ONNX (audited, parity-checked), TensorRT engines and Triton model repositories."""

"""PyTorch → ONNX: export, simplify and check, FP16 conversion, verification against PyTorch."""

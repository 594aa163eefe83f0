"""rn50: ResNet-50 from PyTorch to ONNX Runtime and TensorRT engines, with parity and latency proof."""

__version__ = "0.1.0"

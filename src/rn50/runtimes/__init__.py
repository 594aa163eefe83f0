"""Runtimes behind one contract (:class:`rn50.runtimes.base.Runner`): torch, ONNX Runtime, TensorRT."""

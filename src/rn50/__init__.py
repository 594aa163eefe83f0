"""rn50: ResNet-50 from PyTorch to ONNX Runtime and TensorRT engines, with parity and latency proof.

Every command is also a function here (``rn50.export(...)``, ``rn50.parity(...)``; see ``rn50.api``), loaded on
first use so that ``import rn50`` stays light."""

from typing import Any

__version__ = "0.1.0"


def __getattr__(name: str) -> Any:
    import importlib

    api = importlib.import_module("rn50.api")  # not `from rn50 import api`: that asks this function again
    if name in api.FUNCTIONS:
        return api.FUNCTIONS[name]
    if name == "run":
        return api.run
    raise AttributeError(f"module 'rn50' has no attribute {name!r}")

"""Finding TensorRT. The type stubs (tensorrt-stubs) install a ``tensorrt`` namespace package without
the library, so "importable" is not enough: the real module has ``Builder``."""

from __future__ import annotations

from typing import Any

from rn50.errors import EnvironmentProblem

INSTALL_HINT = "pip install 'rn50[tensorrt]' (NVIDIA's wheels; needs a CUDA GPU and driver)"


def import_tensorrt() -> Any:
    try:
        import tensorrt as trt
    except ImportError as e:
        raise EnvironmentProblem(f"TensorRT is not installed ({e})", fix=INSTALL_HINT) from e
    if not hasattr(trt, "Builder"):
        raise EnvironmentProblem("only TensorRT's type stubs are installed, not TensorRT itself", fix=INSTALL_HINT)
    return trt


def tensorrt_reason() -> str | None:
    """Why TensorRT cannot run here, or None."""
    try:
        import_tensorrt()
    except EnvironmentProblem as e:
        return e.message
    return None

"""The one way rn50 reaches TensorRT.

``trt`` is a lazy module: no TensorRT module is imported until an attribute is read, and reading one
where TensorRT is missing raises a clear ``EnvironmentProblem`` (never a ``NameError`` or
``ImportError``). Every TensorRT module of rn50 uses it; for mypy it *is* ``tensorrt`` (checked against
tensorrt-stubs).

The type stubs (tensorrt-stubs) install a ``tensorrt`` namespace package without the library, so
"importable" is not enough: the real module has ``Builder``.

rn50's tests run the TensorRT path against a stand-in (``tests/standin``) that declares itself with a
``__rn50_standin__`` attribute; its results are labelled ``tensorrt-standin`` everywhere, and it brings
its own host-memory device (``runtimes/device.py``). Real TensorRT has no such attribute.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from rn50.errors import EnvironmentProblem

if TYPE_CHECKING:
    from types import ModuleType

    import tensorrt as trt

    from rn50.runtimes.device import DeviceMemory

INSTALL_HINT = "pip install 'rn50[tensorrt]' (NVIDIA's wheels; needs a CUDA GPU and driver)"
RUNTIME = "tensorrt"
STANDIN_RUNTIME = "tensorrt-standin"
STANDIN_MARK = "__rn50_standin__"
# The test doubles wired in here in place of a runtime, by the label their results carry: the runtime each stands in
# for, and what every report, outcome and skipped model says where its results appear (the rest of rn50 asks
# ``registry.from_test_double`` and never names a double itself).
TEST_DOUBLES = {
    STANDIN_RUNTIME: (
        RUNTIME,
        f"{STANDIN_RUNTIME} rows come from rn50's TensorRT stand-in (its test double, running the ONNX file on "
        "ONNX Runtime CPU), not from TensorRT: they show that rn50's TensorRT code ran, not TensorRT's accuracy or "
        "speed.",
    )
}


def double_label() -> str:
    """The loaded test double's own description (its device column), "" under TensorRT."""
    mark = standin()
    return str(mark.label) if mark is not None else ""


def double_on_path() -> tuple[str, str] | None:
    """(what is loaded, the fix) when the TensorRT module here is rn50's test double, not TensorRT (doctor)."""
    mark = standin()
    if mark is None:
        return None
    return (
        f"only {mark.label} is on the path (emulating {trt.__version__})",
        "remove rn50's tests/standin from PYTHONPATH and pip install 'rn50[tensorrt]' on a GPU host",
    )


def import_tensorrt() -> ModuleType:
    """The loaded TensorRT module, or a clear EnvironmentProblem."""
    try:
        module = importlib.import_module("tensorrt")
    except ImportError as e:
        raise EnvironmentProblem(f"TensorRT is not installed ({e})", fix=INSTALL_HINT) from e
    if not hasattr(module, "Builder"):
        raise EnvironmentProblem("only TensorRT's type stubs are installed, not TensorRT itself", fix=INSTALL_HINT)
    return module


class _LazyTensorRT:
    """Forwards every attribute to the TensorRT module, importing it on first use. The module is looked
    up again on each access (a dictionary hit once imported), so nothing stale is kept."""

    def __getattr__(self, name: str) -> Any:
        return getattr(import_tensorrt(), name)


if not TYPE_CHECKING:
    trt = _LazyTensorRT()


def standin() -> Any | None:
    """The stand-in's self-description if the TensorRT module loaded here is rn50's test stand-in."""
    return getattr(import_tensorrt(), STANDIN_MARK, None)


def runtime_name() -> str:
    """How results of the loaded TensorRT are labelled: ``tensorrt``, or ``tensorrt-standin``."""
    return STANDIN_RUNTIME if standin() is not None else RUNTIME


def version() -> str:
    """TensorRT's version as rn50 records it (engine keys, sidecars, manifest); the stand-in's is marked."""
    v = str(trt.__version__)
    return f"{v}+standin" if standin() is not None else v


def device_memory() -> DeviceMemory:
    """The device-memory seam for TensorRT: torch CUDA, or the stand-in's host memory."""
    mark = standin()
    if mark is not None:
        memory: DeviceMemory = mark.device
        return memory
    from rn50.runtimes.device import TorchCuda

    return TorchCuda()


def problem() -> EnvironmentProblem | None:
    """Why TensorRT cannot run here (no TensorRT, or no GPU for it), or None."""
    try:
        import_tensorrt()
        reason = device_memory().unavailable()
    except EnvironmentProblem as e:
        return e
    if reason is None:
        return None
    return EnvironmentProblem(
        f"TensorRT needs a CUDA GPU: {reason}", fix="run build-trt and TensorRT parity on a machine with an NVIDIA GPU"
    )


def tensorrt_reason() -> str | None:
    p = problem()
    return None if p is None else p.message


def require_tensorrt() -> tuple[str, str]:
    """Fail fast where TensorRT or its GPU is missing; returns (GPU name, compute capability)."""
    p = problem()
    if p is not None:
        raise p
    return device_memory().identity()

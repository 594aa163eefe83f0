"""The Runner contract: a context manager with ``infer(feed) -> dict[str, np.ndarray]``.

The base class checks every feed against the runner's input spec (names, dtypes, shapes) before a
backend sees it, and each runner reports the device or provider that actually ran.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from rn50.errors import UsageError
from rn50.words import cmd

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping
    from types import TracebackType

    from rn50.runtimes.device import DeviceMemory

Feed = dict[str, np.ndarray]


@dataclass(frozen=True)
class TensorSpec:
    name: str
    dtype: str  # numpy dtype name
    shape: tuple[int | str | None, ...]  # a str or None is a dynamic axis


def check_feed(feed: Mapping[str, np.ndarray], specs: list[TensorSpec], *, where: str) -> None:
    """Raise a clear UsageError if ``feed`` does not match ``specs``; all problems in one message."""
    expected = {s.name for s in specs}
    problems = []
    missing, extra = expected - set(feed), set(feed) - expected
    if missing:
        problems.append(f"missing input(s) {sorted(missing)}")
    if extra:
        problems.append(f"unexpected input(s) {sorted(extra)}")
    for spec in specs:
        arr = feed.get(spec.name)
        if arr is None:
            continue
        if not isinstance(arr, np.ndarray):
            problems.append(f"{spec.name}: expected a numpy array, got {type(arr).__name__}")
            continue
        if arr.dtype != np.dtype(spec.dtype):
            problems.append(f"{spec.name}: dtype {arr.dtype}, expected {spec.dtype}")
        if arr.ndim != len(spec.shape):
            problems.append(f"{spec.name}: shape {arr.shape}, expected rank {len(spec.shape)} {spec.shape}")
            continue
        bad = [i for i, d in enumerate(spec.shape) if isinstance(d, int) and arr.shape[i] != d]
        if bad:
            hint = ""
            if arr.ndim == 4 and arr.shape[-1] == 3 and spec.shape[1] == 3:
                hint = " (this looks like NHWC; transpose to NCHW with arr.transpose(0, 3, 1, 2))"
            problems.append(f"{spec.name}: shape {arr.shape}, expected {spec.shape}{hint}")
    if problems:
        raise UsageError(
            f"{where}: " + "; ".join(problems),
            fix=f"rn50 feeds 'input' float32 (N, 3, 224, 224); export the model with {cmd('export')}, or feed what its "
            "inputs say",
        )


@dataclass(frozen=True)
class DeviceBench:
    """One inference with inputs and outputs already in GPU memory: ``enqueue()`` queues it on
    ``stream`` without waiting, so ``memory``'s device clock around it times the GPU alone."""

    enqueue: Callable[[], None]
    stream: Any
    cuda_graph: bool
    memory: DeviceMemory


class Runner(abc.ABC):
    """Base of every runtime. Use as ``with runner: runner.infer(feed)``."""

    #: backend name as users type it ("torch", "onnxruntime", "tensorrt")
    backend: str = ""

    def __init__(self, *, label: str):
        self.label = label
        self._active = False

    def __enter__(self) -> Runner:
        self.activate()
        self._active = True
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._active = False
        self.deactivate()

    @abc.abstractmethod
    def activate(self) -> None: ...

    def deactivate(self) -> None:  # noqa: B027 - optional hook
        pass

    @abc.abstractmethod
    def input_specs(self) -> list[TensorSpec]: ...

    @property
    @abc.abstractmethod
    def device(self) -> str:
        """What actually ran: provider or device name, never what was merely asked for."""

    @abc.abstractmethod
    def _infer(self, feed: Feed) -> Feed: ...

    def device_bench(self, feed: Feed, *, cuda_graph: bool) -> DeviceBench | None:
        """Device-resident timing for ``feed`` (GPU runners); None for a runner without a GPU side.
        Raises EnvironmentProblem when ``cuda_graph`` is asked of a runner that cannot capture one."""
        return None

    def infer(self, feed: Mapping[str, np.ndarray]) -> Feed:
        if not self._active:
            raise RuntimeError(f"{self.label}: use the runner as a context manager before infer()")
        check_feed(feed, self.input_specs(), where=self.label)
        return self._infer(dict(feed))

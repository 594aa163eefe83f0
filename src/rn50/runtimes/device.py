"""The device-memory seam: every GPU buffer, stream, copy, CUDA graph and device clock rn50 uses
goes through one small interface, so the code around it runs anywhere.

On a real host the implementation is :class:`TorchCuda` (torch's CUDA allocator, streams, events and
graphs). The TensorRT stand-in used by rn50's tests brings its own host-memory implementation; rn50
picks it only when the loaded ``tensorrt`` module declares itself a stand-in (see ``trt_env``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from rn50.errors import EnvironmentProblem

if TYPE_CHECKING:
    from collections.abc import Callable

COPY_SAMPLES = 20


class DeviceMemory(Protocol):
    """What rn50 does with device memory. Buffers and streams are opaque to the callers."""

    #: shown next to results measured through this seam ("CUDA", or the stand-in's own label)
    name: str

    def unavailable(self) -> str | None:
        """Why no device can be used here, or None."""

    def identity(self) -> tuple[str, str]:
        """(device name, compute capability "major.minor")."""

    def stream(self) -> Any: ...

    def stream_handle(self, stream: Any) -> int:
        """The raw stream handle TensorRT's ``execute_async_v3`` takes."""

    def synchronize(self, stream: Any) -> None: ...

    def to_device(self, array: np.ndarray, stream: Any) -> Any:
        """A device copy of ``array``."""

    def empty(self, shape: tuple[int, ...], dtype: np.dtype[Any]) -> Any: ...

    def address(self, buffer: Any) -> int: ...

    def to_host(self, buffer: Any, stream: Any) -> np.ndarray:
        """A host copy of ``buffer`` (float32 for floating-point buffers)."""

    def capture(self, stream: Any, enqueue: Callable[[], None]) -> Callable[[], None]:
        """Capture ``enqueue`` once as a CUDA graph; returns a function that replays it on ``stream``."""

    def timer(self, stream: Any, enqueue: Callable[[], None]) -> Callable[[], float]:
        """A function that runs ``enqueue`` once and returns its device time in ms."""

    def copy_times(self, feed: dict[str, np.ndarray], output_bytes: int, stream: Any) -> tuple[float, float]:
        """Median host-to-device time of ``feed`` and device-to-host time of ``output_bytes``, in ms."""


class TorchCuda:
    """Device memory through torch's CUDA runtime: the implementation on every real GPU host."""

    name = "CUDA"

    def unavailable(self) -> str | None:
        import torch

        return None if torch.cuda.is_available() else "no CUDA GPU visible to torch"

    def identity(self) -> tuple[str, str]:
        import torch

        if not torch.cuda.is_available():
            raise EnvironmentProblem(
                "no CUDA GPU is visible", fix="run build-trt and TensorRT parity on a machine with an NVIDIA GPU"
            )
        major, minor = torch.cuda.get_device_capability()
        return torch.cuda.get_device_name(), f"{major}.{minor}"

    def stream(self) -> Any:
        import torch

        return torch.cuda.Stream()

    def stream_handle(self, stream: Any) -> int:
        return int(stream.cuda_stream)

    def synchronize(self, stream: Any) -> None:
        stream.synchronize()

    def to_device(self, array: np.ndarray, stream: Any) -> Any:
        import torch

        with torch.cuda.stream(stream):
            return torch.from_numpy(np.ascontiguousarray(array)).to("cuda", non_blocking=False)

    def empty(self, shape: tuple[int, ...], dtype: np.dtype[Any]) -> Any:
        import torch

        return torch.empty(shape, dtype=torch.from_numpy(np.empty(0, dtype)).dtype, device="cuda")

    def address(self, buffer: Any) -> int:
        return int(buffer.data_ptr())

    def to_host(self, buffer: Any, stream: Any) -> np.ndarray:
        stream.synchronize()
        return np.asarray(buffer.float().cpu().numpy())

    def capture(self, stream: Any, enqueue: Callable[[], None]) -> Callable[[], None]:
        import torch

        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph, stream=stream):
            enqueue()

        def replay() -> None:
            with torch.cuda.stream(stream):
                graph.replay()

        return replay

    def timer(self, stream: Any, enqueue: Callable[[], None]) -> Callable[[], float]:
        import torch

        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)

        def one() -> float:
            start.record(stream)
            enqueue()
            end.record(stream)
            end.synchronize()
            return float(start.elapsed_time(end))

        return one

    def copy_times(self, feed: dict[str, np.ndarray], output_bytes: int, stream: Any) -> tuple[float, float]:
        import torch

        host_in = [torch.from_numpy(a).pin_memory() for a in feed.values()]
        dev_in = [t.to("cuda") for t in host_in]
        dev_out = torch.empty(output_bytes, dtype=torch.uint8, device="cuda")
        host_out = torch.empty(output_bytes, dtype=torch.uint8).pin_memory()

        def upload() -> None:
            with torch.cuda.stream(stream):
                for d, h in zip(dev_in, host_in, strict=True):
                    d.copy_(h, non_blocking=True)

        def download() -> None:
            with torch.cuda.stream(stream):
                host_out.copy_(dev_out, non_blocking=True)

        return median_of(self.timer(stream, upload)), median_of(self.timer(stream, download))


def median_of(one: Callable[[], float], samples: int = COPY_SAMPLES) -> float:
    return float(np.median([one() for _ in range(samples)]))

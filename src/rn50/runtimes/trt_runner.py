"""TensorRT runner: checks the engine file and its sidecar against this machine, then runs it with
``set_input_shape``/``set_tensor_address``/``execute_async_v3`` on a non-default stream. Every buffer,
copy, stream and CUDA graph goes through the device-memory seam (torch CUDA on real hosts)."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from rn50.errors import CheckFailed, UsageError
from rn50.runtimes.base import DeviceBench, Feed, Runner, TensorSpec
from rn50.runtimes.trt_engine import dims, recording_logger
from rn50.runtimes.trt_env import device_memory, double_label, require_tensorrt, runtime_name, trt, version
from rn50.runtimes.trt_plan import Sidecar, check_engine_file, check_sidecar, rebuild_fix, sidecar_path
from rn50.words import cmd, opt

if TYPE_CHECKING:
    from rn50.runtimes.device import DeviceMemory


class TensorRTRunner(Runner):
    backend = "tensorrt"

    def __init__(self, engine_path: Path | str, *, label: str | None = None):
        super().__init__(label=label or f"tensorrt · {Path(engine_path).name}")
        self.engine_path = Path(engine_path)
        self.sidecar: Sidecar | None = None
        self.engine: Any = None
        self.context: Any = None
        self.stream: Any = None
        self.memory: DeviceMemory | None = None  # set by activate()
        self._gpu = ""
        self._runtime = ""
        self._double = ""  # a test double's own label, where one runs instead of TensorRT

    def activate(self) -> None:
        self._gpu, cc = require_tensorrt()
        self._runtime = runtime_name()
        self._double = double_label()
        self.memory = device_memory()
        if not self.engine_path.is_file():
            raise UsageError(f"engine not found: {self.engine_path}", fix=f"run {cmd('build-trt')} first")
        self.sidecar = sidecar = Sidecar.load(sidecar_path(self.engine_path))
        precision = str(sidecar.options.get("precision", "fp32"))
        plan = self.engine_path.read_bytes()
        check_engine_file(sidecar, self.engine_path, hashlib.sha256(plan).hexdigest())
        check_sidecar(
            sidecar, tensorrt_version=version(), compute_capability=cc, precision=precision, runtime=self._runtime
        )
        logger = recording_logger()
        self.engine = trt.Runtime(logger).deserialize_cuda_engine(plan)
        if self.engine is None:
            raise UsageError(
                f"TensorRT could not load {self.engine_path.name}: {logger.last_error()}", fix=rebuild_fix(precision)
            )
        self.context = self.engine.create_execution_context()
        self.stream = self.memory.stream()

    def deactivate(self) -> None:
        self.context = self.engine = self.stream = None

    @property
    def _memory(self) -> DeviceMemory:
        if self.memory is None:
            raise RuntimeError(f"{self.label}: use the runner as a context manager first")
        return self.memory

    def _names(self, mode: Any) -> list[str]:
        names = (self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors))
        return [n for n in names if self.engine.get_tensor_mode(n) == mode]

    def input_specs(self) -> list[TensorSpec]:
        specs = []
        for name in self._names(trt.TensorIOMode.INPUT):
            dtype = np.dtype(trt.nptype(self.engine.get_tensor_dtype(name))).name
            specs.append(
                TensorSpec(name, dtype, tuple(d if d >= 0 else None for d in dims(self.engine.get_tensor_shape(name))))
            )
        return specs

    def output_names(self) -> list[str]:
        return self._names(trt.TensorIOMode.OUTPUT)

    @property
    def device(self) -> str:
        if self._double:
            return self._double
        return f"TensorRT on {self._gpu}" if self._gpu else "TensorRT"

    def _bind(self, feed: Feed) -> list[Any]:
        """Copy ``feed`` to device buffers, set shapes and addresses; returns every buffer (inputs, outputs)."""
        memory = self._memory
        buffers: list[Any] = []
        for name, arr in feed.items():
            if not self.context.set_input_shape(name, tuple(arr.shape)):
                lo, hi = self._batch_range()
                raise UsageError(
                    f"{self.label}: input shape {arr.shape} is outside the engine's profile (batch {lo}..{hi})",
                    fix=f"feed batches within the profile, or rebuild with {cmd('build-trt')} "
                    f"{opt('min_batch')}/{opt('max_batch')}",
                )
            buffer = memory.to_device(arr, self.stream)
            buffers.append(buffer)
            self.context.set_tensor_address(name, memory.address(buffer))
        for name in self.output_names():
            shape = tuple(dims(self.context.get_tensor_shape(name)))
            buffer = memory.empty(shape, np.dtype(trt.nptype(self.engine.get_tensor_dtype(name))))
            buffers.append(buffer)
            self.context.set_tensor_address(name, memory.address(buffer))
        return buffers

    def _batch_range(self) -> tuple[int, int]:
        profile = self.sidecar.profiles[0] if self.sidecar and self.sidecar.profiles else {}
        return int(profile.get("input_min", [0])[0]), int(profile.get("input_max", [0])[0])

    def _enqueue(self) -> None:
        if not self.context.execute_async_v3(self._memory.stream_handle(self.stream)):
            raise CheckFailed(
                f"{self.label}: execute_async_v3 failed", fix=f"rerun with {opt('verbose')} for TensorRT's log"
            )

    def device_bench(self, feed: Feed, *, cuda_graph: bool) -> DeviceBench | None:
        """Buffers stay on the device; with ``cuda_graph`` one enqueue is captured and replayed."""
        memory = self._memory
        buffers = self._bind(feed)
        self._enqueue()  # first run: lazy allocations happen outside the timed and captured region
        memory.synchronize(self.stream)

        def enqueue() -> None:
            _ = buffers  # alive while timing
            self._enqueue()

        run = memory.capture(self.stream, enqueue) if cuda_graph else enqueue
        return DeviceBench(run, self.stream, cuda_graph, memory)

    def _infer(self, feed: Feed) -> Feed:
        buffers = self._bind(feed)
        self._enqueue()
        outputs = buffers[len(feed) :]
        return {n: self._memory.to_host(b, self.stream) for n, b in zip(self.output_names(), outputs, strict=True)}

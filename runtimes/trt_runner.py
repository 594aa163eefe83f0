"""TensorRT runner: checks the engine's sidecar against this machine, then runs it with
``set_input_shape``/``set_tensor_address``/``execute_async_v3`` on a non-default CUDA stream,
with torch tensors as device buffers."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from rn50.errors import CheckFailed, UsageError
from rn50.runtimes.base import DeviceBench, Feed, Runner, TensorSpec
from rn50.runtimes.trt_engine import gpu_identity
from rn50.runtimes.trt_env import import_tensorrt
from rn50.runtimes.trt_plan import Sidecar, check_sidecar, sidecar_path


class TensorRTRunner(Runner):
    backend = "tensorrt"

    def __init__(self, engine_path: Path | str, *, label: str | None = None):
        super().__init__(label=label or f"tensorrt · {Path(engine_path).name}")
        self.engine_path = Path(engine_path)
        self.sidecar: Sidecar | None = None
        self.engine: Any = None
        self.context: Any = None
        self.stream: Any = None
        self._gpu = ""

    def activate(self) -> None:
        import_tensorrt()  # a clear error where TensorRT is missing
        import tensorrt as trt
        import torch

        if not self.engine_path.is_file():
            raise UsageError(f"engine not found: {self.engine_path}", fix="run rn50 build-trt first")
        self.sidecar = Sidecar.load(sidecar_path(self.engine_path))
        self._gpu, cc = gpu_identity()
        check_sidecar(self.sidecar, tensorrt_version=trt.__version__, compute_capability=cc,
                      precision=str(self.sidecar.options.get("precision", "fp32")))  # fmt: skip
        runtime = trt.Runtime(trt.Logger(trt.Logger.WARNING))
        self.engine = runtime.deserialize_cuda_engine(self.engine_path.read_bytes())
        if self.engine is None:
            raise CheckFailed(f"TensorRT could not deserialise {self.engine_path}", fix="rebuild with `rn50 build-trt`")
        self.context = self.engine.create_execution_context()
        self.stream = torch.cuda.Stream()

    def deactivate(self) -> None:
        self.context = self.engine = self.stream = None

    def input_specs(self) -> list[TensorSpec]:
        import_tensorrt()  # a clear error where TensorRT is missing
        import tensorrt as trt
        specs = []
        for i in range(self.engine.num_io_tensors):
            name = self.engine.get_tensor_name(i)
            if self.engine.get_tensor_mode(name) == trt.TensorIOMode.INPUT:
                dtype = np.dtype(trt.nptype(self.engine.get_tensor_dtype(name))).name
                specs.append(TensorSpec(name, dtype, tuple(d if d >= 0 else None for d in self.engine.get_tensor_shape(name))))
        return specs

    @property
    def device(self) -> str:
        return f"TensorRT on {self._gpu}" if self._gpu else "TensorRT"

    def _bind(self, feed: Feed) -> list[Any]:
        """Copy ``feed`` to device buffers, set shapes and addresses; returns every buffer (inputs, outputs)."""
        import_tensorrt()
        import tensorrt as trt
        import torch

        buffers: list[Any] = []
        for name, arr in feed.items():
            tensor = torch.from_numpy(np.ascontiguousarray(arr)).to("cuda")
            buffers.append(tensor)
            if not self.context.set_input_shape(name, tuple(arr.shape)):
                raise UsageError(f"{self.label}: input shape {arr.shape} is outside the engine's profile",
                                 fix="rebuild with a wider --min-batch/--max-batch")  # fmt: skip
            self.context.set_tensor_address(name, tensor.data_ptr())
        for i in range(self.engine.num_io_tensors):
            name = self.engine.get_tensor_name(i)
            if self.engine.get_tensor_mode(name) != trt.TensorIOMode.OUTPUT:
                continue
            shape = tuple(self.context.get_tensor_shape(name))
            dtype = torch.from_numpy(np.empty(0, trt.nptype(self.engine.get_tensor_dtype(name)))).dtype
            tensor = torch.empty(shape, dtype=dtype, device="cuda")
            buffers.append(tensor)
            self.context.set_tensor_address(name, tensor.data_ptr())
        return buffers

    def device_bench(self, feed: Feed, *, cuda_graph: bool) -> DeviceBench | None:
        """Buffers stay on the device; with ``cuda_graph`` one enqueue is captured and replayed."""
        import torch

        with torch.cuda.stream(self.stream):
            buffers = self._bind(feed)
            if not self.context.execute_async_v3(self.stream.cuda_stream):  # first run: lazy allocations
                raise CheckFailed(f"{self.label}: execute_async_v3 failed", fix="run with --verbose for TensorRT's log")
        self.stream.synchronize()
        stream, context = self.stream, self.context

        def enqueue() -> None:
            _ = buffers  # alive while timing
            context.execute_async_v3(stream.cuda_stream)

        if not cuda_graph:
            return DeviceBench(enqueue, stream, False)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph, stream=stream):
            enqueue()

        def replay() -> None:
            _ = buffers
            with torch.cuda.stream(stream):
                graph.replay()

        return DeviceBench(replay, stream, True)

    def _infer(self, feed: Feed) -> Feed:
        import torch

        with torch.cuda.stream(self.stream):
            buffers = self._bind(feed)
            if not self.context.execute_async_v3(self.stream.cuda_stream):
                raise CheckFailed(f"{self.label}: execute_async_v3 failed", fix="run with --verbose for TensorRT's log")
        self.stream.synchronize()
        outputs = buffers[len(feed):]
        names = self.output_names()
        return {n: t.float().cpu().numpy() for n, t in zip(names, outputs, strict=True)}

    def output_names(self) -> list[str]:
        import tensorrt as trt

        names = (self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors))
        return [n for n in names if self.engine.get_tensor_mode(n) == trt.TensorIOMode.OUTPUT]

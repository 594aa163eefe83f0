"""ONNX Runtime: CPU provider, CUDA provider (IOBinding, device-resident buffers), TensorRT provider.

ONNX Runtime silently falls back to the CPU when a GPU provider cannot load its libraries; this runner
checks which providers the session really got and refuses to report CPU numbers under a GPU label.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np

from rn50.errors import CheckFailed, EnvironmentProblem, UsageError
from rn50.runtimes.base import DeviceBench, Feed, Runner, TensorSpec
from rn50.runtimes.device import TorchCuda
from rn50.words import cmd, opt

if TYPE_CHECKING:
    from collections.abc import Callable

log = logging.getLogger(__name__)
T = TypeVar("T")

PROVIDERS = {
    "cpu": "CPUExecutionProvider",
    "cuda": "CUDAExecutionProvider",
    "trt": "TensorrtExecutionProvider",
}
# Libraries a GPU provider needs, probed by name when it fails to load, so the message can name one.
GPU_LIBRARIES = {
    "cuda": ["libcudart.so.13", "libcublas.so.13", "libcublasLt.so.13", "libcufft.so.12", "libcudnn.so.9"],
    "trt": ["libnvinfer.so.10", "libnvonnxparser.so.10"],
}
# The CUDA provider's settings, explicit rather than ONNX Runtime's defaults (use_tf32=1, prefer_nhwc=0), as
# measured on an H100 by benchmarks/bench_ort_cuda_options.py (README, "GPU"). TF32 off: an FP32 row is FP32
# arithmetic, as the PyTorch reference is; with TF32 the FP32 file's max abs error (1.2e-3) fails FP32 parity.
# NHWC convolutions for FP16 files only: faster there (1.22 vs 1.43 ms at batch 1, 9.4k vs 8.2k img/s at 256),
# slower for FP32 (2.88 vs 2.47 ms), and ONNX Runtime 1.31 fails on Q/DQ files with it ("Input channels C is
# not equal to kernel channels * group").
CUDA_OPTIONS = {"use_tf32": "0", "prefer_nhwc": "0"}
NHWC_PRECISIONS = ("fp16",)


def cuda_options_for(precision: str | None) -> dict[str, str]:
    """The CUDA provider settings for a file of ``precision`` (None: not known)."""
    return {**CUDA_OPTIONS, "prefer_nhwc": "1" if precision in NHWC_PRECISIONS else "0"}


ORT_TYPES = {
    "tensor(float)": "float32",
    "tensor(float16)": "float16",
    "tensor(int64)": "int64",
    "tensor(uint8)": "uint8",
}


def missing_libraries(names: list[str]) -> list[str]:
    out = []
    for name in names:
        try:
            ctypes.CDLL(name)
        except OSError:
            out.append(name)
    return out


def tensorrt_libraries_missing() -> str | None:
    """Why ONNX Runtime's TensorRT provider cannot load here (TensorRT's own libraries absent), or None."""
    missing = missing_libraries(GPU_LIBRARIES["trt"])
    return f"TensorRT's libraries are not installed ({', '.join(missing)})" if missing else None


def import_onnxruntime() -> Any:
    try:
        import onnxruntime
    except ImportError as e:
        raise EnvironmentProblem(
            "onnxruntime is not installed", fix="pip install onnxruntime (or onnxruntime-gpu)"
        ) from e
    return onnxruntime


class OnnxRuntimeRunner(Runner):
    backend = "onnxruntime"

    def __init__(
        self,
        model_path: Path | str,
        *,
        provider: str = "cpu",
        threads: int | None = None,
        label: str | None = None,
        cuda_options: dict[str, str] | None = None,
        optimize: bool = True,
    ):
        """``optimize`` False: graph optimizations off, so a Q/DQ file runs as written (its own semantics: float
        operators between QuantizeLinear/DequantizeLinear pairs, no integer kernels)."""
        if provider not in PROVIDERS:
            raise UsageError(f"unknown ONNX Runtime provider {provider!r}", fix=f"use one of {', '.join(PROVIDERS)}")
        if threads is not None and threads < 1:
            raise UsageError(f"{opt('threads')} must be >= 1, got {threads}", fix="pass a positive thread count")
        super().__init__(label=label or f"onnxruntime-{provider}")
        self.model_path = Path(model_path)
        self.provider = provider
        self.threads = threads
        self.cuda_options = cuda_options if cuda_options is not None else cuda_options_for(None)
        self.optimize = optimize
        self.session: Any = None

    def activate(self) -> None:
        self.session = self._session()

    def _session(self, provider_options: dict[str, str] | None = None) -> Any:
        """A session on the wanted provider, refusing ONNX Runtime's silent fallback to the CPU."""
        if self.provider != "cpu":
            # onnxruntime-gpu finds its CUDA and cuDNN libraries through torch's wheels, which load them when imported.
            with contextlib.suppress(ImportError):
                import torch  # noqa: F401
        ort = import_onnxruntime()
        if not self.model_path.is_file():
            raise UsageError(
                f"ONNX file not found: {self.model_path}", fix=f"run {cmd('export')} first or pass an existing file"
            )
        wanted = PROVIDERS[self.provider]
        if wanted not in ort.get_available_providers():
            raise EnvironmentProblem(
                f"this onnxruntime build has no {wanted} (available: {', '.join(ort.get_available_providers())})",
                fix="pip install onnxruntime-gpu (in place of onnxruntime) on a machine with CUDA",
            )
        opts = ort.SessionOptions()
        if self.threads:
            opts.intra_op_num_threads = self.threads
            opts.inter_op_num_threads = 1
        opts.log_severity_level = 3
        if not self.optimize:
            opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
        options = {**(self.cuda_options if self.provider == "cuda" else {}), **(provider_options or {})}
        first: Any = (wanted, options) if options else wanted
        chain = [first] if wanted == "CPUExecutionProvider" else [first, "CPUExecutionProvider"]
        try:
            session = ort.InferenceSession(str(self.model_path), sess_options=opts, providers=chain)
        except Exception as e:  # onnxruntime raises its own Fail/InvalidGraph/... types
            raise UsageError(
                f"ONNX Runtime cannot load {self.model_path}: {str(e).splitlines()[0]}",
                fix=f"check that the file is a valid ONNX model ({cmd('export')} writes one)",
            ) from e
        got = session.get_providers()
        if wanted not in got:
            missing = missing_libraries(GPU_LIBRARIES.get(self.provider, []))
            raise EnvironmentProblem(
                f"ONNX Runtime fell back to {got[0]} instead of {wanted}"
                + (f": cannot load {', '.join(missing)}" if missing else ""),
                fix="install the CUDA/cuDNN libraries onnxruntime-gpu was built for (or `import torch` first so its "
                "CUDA libraries load)",
            )
        return session

    def deactivate(self) -> None:
        self.session = None

    def input_specs(self) -> list[TensorSpec]:
        return [
            TensorSpec(i.name, ORT_TYPES.get(i.type, i.type), tuple(d if isinstance(d, int) else None for d in i.shape))
            for i in self.session.get_inputs()
        ]

    @property
    def device(self) -> str:
        return self.session.get_providers()[0] if self.session else PROVIDERS[self.provider]

    def _infer(self, feed: Feed) -> Feed:
        names = [o.name for o in self.session.get_outputs()]
        if self.provider == "cpu":
            return dict(zip(names, self._run(lambda: self.session.run(names, feed)), strict=True))
        # GPU: inputs copied to the device once, outputs left there until read back.
        ort = import_onnxruntime()
        binding = self.session.io_binding()
        for name, arr in feed.items():
            binding.bind_ortvalue_input(name, ort.OrtValue.ortvalue_from_numpy(np.ascontiguousarray(arr), "cuda", 0))
        for name in names:
            binding.bind_output(name, "cuda", 0)
        self._run(lambda: self.session.run_with_iobinding(binding))
        return dict(zip(names, binding.copy_outputs_to_cpu(), strict=True))

    def _run(self, run: Callable[[], T]) -> T:
        """``run()``, with ONNX Runtime's failure to execute the model reported as a failed check of this runtime."""
        try:
            return run()
        except Exception as e:  # onnxruntime raises RuntimeError (IOBinding) or its own Fail/RuntimeException types
            text = str(e).replace("Error in execution: ", "")
            raise CheckFailed(
                f"{self.label}: ONNX Runtime could not run {self.model_path.name} on {self.device}: "
                f"{text.splitlines()[0]}",
                fix=f"run {cmd('parity', runtime='onnxruntime-cpu')} to check the file; this runtime cannot run it as "
                "written",
            ) from e

    def device_bench(self, feed: Feed, *, cuda_graph: bool) -> DeviceBench | None:
        """A second session on a torch CUDA stream (``user_compute_stream``) with inputs and outputs bound
        to fixed device buffers; with ``cuda_graph`` the provider captures the run once and replays it."""
        if self.provider == "cpu":
            return None
        import torch

        stream = torch.cuda.Stream()
        options = {"device_id": "0", "has_user_compute_stream": "1", "user_compute_stream": str(stream.cuda_stream)}
        if cuda_graph:
            options["enable_cuda_graph" if self.provider == "cuda" else "trt_cuda_graph_enable"] = "1"
        try:
            session = self._session(options)
        except UsageError as e:
            if not cuda_graph:
                raise
            # e.g. a Q/DQ file with nodes the CUDA provider leaves to the CPU: ONNX Runtime refuses to capture it
            raise EnvironmentProblem(
                f"no CUDA graph for {self.model_path.name}: {str(e.__cause__).splitlines()[0]}",
                fix=f"this file runs without CUDA graphs (its other rows); pass {opt('cuda_graphs', False)} to skip "
                "them",
            ) from e
        batch = next(iter(feed.values())).shape[0]
        binding = session.io_binding()
        keep: list[Any] = []
        for name, arr in feed.items():
            tensor = torch.from_numpy(np.ascontiguousarray(arr)).to("cuda")
            keep.append(tensor)
            binding.bind_input(name, "cuda", 0, arr.dtype, list(arr.shape), tensor.data_ptr())
        for out in session.get_outputs():
            shape = [d if isinstance(d, int) else batch for d in out.shape]
            tensor = torch.empty(shape, dtype=torch.float32, device="cuda")
            keep.append(tensor)
            binding.bind_output(out.name, "cuda", 0, np.float32, shape, tensor.data_ptr())
        self._run(lambda: session.run_with_iobinding(binding))  # with a CUDA graph, this run captures it
        torch.cuda.synchronize()

        def enqueue() -> None:
            _ = keep  # the bound buffers live as long as the closure
            session.run_with_iobinding(binding)

        return DeviceBench(enqueue, stream, cuda_graph, TorchCuda())

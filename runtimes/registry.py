"""Which runtimes can run which artifact here, and a runner for each (heavy imports deferred)."""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from rn50.errors import UsageError
from rn50.runtimes.trt_env import RUNTIME as TENSORRT
from rn50.runtimes.trt_env import STANDIN_RUNTIME as STANDIN

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable
    from pathlib import Path

    from rn50.runtimes.base import Runner
    from rn50.runtimes.qdq_form import QdqForm

TORCH_RUNTIMES = ("torch-cpu", "torch-cuda")  # the PyTorch model itself, as a profile target
TORCH_ARTIFACT = "pytorch-fp32"
ONNX_RUNTIMES = ("onnxruntime-cpu", "onnxruntime-cuda", "onnxruntime-trt")
# OpenVINO's CPU plugin, with its inference precision always explicit: f32, and bf16 as its own runtime
# (it applies to FP32 models only, and its results are labelled bf16).
OPENVINO_PRECISION = {"openvino-cpu": "f32", "openvino-cpu-bf16": "bf16"}
OPENVINO_RUNTIMES = tuple(OPENVINO_PRECISION)
# Engines run on TensorRT; under rn50's test stand-in their results are labelled tensorrt-standin, a
# name users cannot ask for and that never reads as TensorRT.
ENGINE_RUNTIMES = (TENSORRT, STANDIN)
RUNTIMES = (*ONNX_RUNTIMES, *OPENVINO_RUNTIMES, TENSORRT)  # what parity's --runtime accepts (PyTorch is its reference)
PROFILE_RUNTIMES = (*TORCH_RUNTIMES, *RUNTIMES)  # what profile's --runtime accepts
GPU_RUNTIMES = ("torch-cuda", "onnxruntime-cuda", "onnxruntime-trt", *ENGINE_RUNTIMES)
STANDIN_NOTE = (f"{STANDIN} rows come from rn50's TensorRT stand-in (its test double, running the ONNX file on "
                "ONNX Runtime CPU), not from TensorRT: they show that rn50's TensorRT code ran, not TensorRT's accuracy or speed.")


def standin_note(runtimes: Iterable[str]) -> list[str]:
    """The note every report carries when it shows stand-in results."""
    return [STANDIN_NOTE] if STANDIN in runtimes else []
PROVIDER_OF = {"onnxruntime-cpu": "cpu", "onnxruntime-cuda": "cuda", "onnxruntime-trt": "tensorrt"}


MODEL_KINDS = ("onnx", "ir", "engine")  # artifact kinds a runtime runs


def reads(runtime: str) -> tuple[str, ...]:
    """The artifact kinds ``runtime`` runs."""
    if runtime in ONNX_RUNTIMES:
        return ("onnx",)
    if runtime in OPENVINO_RUNTIMES:
        return ("onnx", "ir")
    if runtime in ENGINE_RUNTIMES:
        return ("engine",)
    return ()


def result_precision(runtime: str, artifact_precision: str) -> str | None:
    """The precision ``runtime``'s results on an artifact are judged and labelled by; None: it does not apply."""
    if runtime == "openvino-cpu-bf16":
        return "bf16" if artifact_precision == "fp32" else None
    return artifact_precision


# INT8 forms a CPU runtime's kernels compute other than the file says on CPUs of the avx2 class (x86 without
# VNNI: u8×s8 pairs summed in a saturating 16-bit intermediate). Measured (README, "INT8 on every CPU"):
# ONNX Runtime saturates on uint8 activations with full-range weights and runs int8 activations (its s8/s8
# path) faithfully; OpenVINO saturates on full-range weights with either activation type; 7-bit weights are
# faithful on both.
SATURATES_ON_AVX2: dict[str, Callable[[QdqForm], bool]] = {
    "onnxruntime-cpu": lambda f: f.activations == "uint8" and f.weight_bits == 8,
    "openvino-cpu": lambda f: f.weight_bits == 8,
}
KERNELS = {"onnxruntime-cpu": "ONNX Runtime's u8s8 kernels", "openvino-cpu": "OpenVINO's INT8 kernels"}


def saturates(runtime: str, form: QdqForm | None, cpu_class: str) -> bool:
    """Whether ``runtime``'s INT8 kernels on a CPU of ``cpu_class`` saturate on a file of ``form``."""
    from rn50.machine import AVX2

    rule = SATURATES_ON_AVX2.get(runtime)
    return form is not None and cpu_class == AVX2 and rule is not None and rule(form)


def engine_deviation(runtime: str, form: QdqForm | None, cpu_class: str) -> tuple[str, str]:
    """The likely cause of an INT8 runtime computing something other than its Q/DQ file, and the fix."""
    if not saturates(runtime, form, cpu_class):
        return (f"{runtime} does not compute this file as its Q/DQ nodes say (more than integer rounding explains: a fusion "
                "that changes the math, a wrong build or a runtime bug)",
                "compare the file on another runtime (rn50 parity --artifact …) and report it to the runtime's maintainers "
                "with parity.json; the file's own error is judged apart (file vs FP32)")  # fmt: skip
    assert form is not None
    cause = (f"{KERNELS[runtime]} saturate on this CPU (avx2 class: no VNNI, u8×s8 pairs summed in 16 bits) on this file's "
             f"full-range weights")
    if form.target == "onnxruntime-cpu":
        made = f" (it was made for {form.cpu_class}-class CPUs)" if form.cpu_class else ""
        return cause + made, "re-run `rn50 quantize --int8 --cpu avx2`: 7-bit weights, computed faithfully on every x86 CPU"
    if form.target == "tensorrt":
        return (cause + " (it is made for TensorRT)",
                "on this CPU run the onnxruntime-cpu file made with `rn50 quantize --int8 --cpu avx2` instead")  # fmt: skip
    return cause, "quantize weights to 7 bits for CPUs without VNNI (ONNX Runtime: reduce_range=True), or use `rn50 quantize --int8 --cpu avx2`"


def label(runtime: str, artifact: str) -> str:
    """How a runtime × artifact pair is named everywhere: results, reports, progress, errors."""
    return f"{runtime} · {artifact}"


@dataclass(frozen=True)
class Target:
    runtime: str
    precision: str
    artifact: str  # manifest name, or the file name for an explicit path
    path: Path | None  # None: the PyTorch model itself (TORCH_RUNTIMES)
    source: Path | None = None  # for an engine or IR: the ONNX file it was made from
    sha256: str | None = None  # of ``path``, as checked against the manifest
    form: QdqForm | None = None  # INT8: the integer form of its Q/DQ file (``path``, or ``source``)

    @property
    def qdq_file(self) -> Path | None:
        """INT8: the Q/DQ ONNX file whose own semantics this target's results are compared with."""
        if self.precision != "int8":
            return None
        qdq = self.source or self.path
        return qdq if qdq is not None and qdq.suffix == ".onnx" else None

    @property
    def label(self) -> str:
        return label(self.runtime, self.artifact)


def check_names(kind: str, names: list[str] | None, known: tuple[str, ...] = RUNTIMES) -> None:
    """Refuse names that are not in ``known`` (``kind``: "runtime", "precision")."""
    unknown = [n for n in names or [] if n not in known]
    if unknown:
        raise UsageError(f"unknown {kind}(s) {', '.join(unknown)}", fix=f"use any of {', '.join(known)}")


def unavailable_reason(runtime: str) -> str | None:
    """Why ``runtime`` cannot run on this machine, or None if it may (loading can still fail)."""
    if runtime.startswith("onnxruntime"):
        if importlib.util.find_spec("onnxruntime") is None:
            return "onnxruntime is not installed (pip install onnxruntime)"
        import onnxruntime

        from rn50.runtimes.ort_runner import PROVIDERS

        provider = PROVIDERS[PROVIDER_OF[runtime]]
        if provider not in onnxruntime.get_available_providers():
            return f"this onnxruntime build has no {provider} (pip install 'rn50[gpu]' on a CUDA host)"
        if runtime == "onnxruntime-trt":
            from rn50.runtimes.ort_runner import tensorrt_libraries_missing

            # probed first: onnxruntime would print its own load errors, then fall back to the CPU
            missing = tensorrt_libraries_missing()
            return f"{missing}, which ONNX Runtime's TensorRT provider loads" if missing else None
        return None
    if runtime in ENGINE_RUNTIMES:
        from rn50.runtimes.trt_env import tensorrt_reason

        return tensorrt_reason()
    if runtime in OPENVINO_RUNTIMES:
        if importlib.util.find_spec("openvino") is None:
            return "openvino is not installed (pip install 'rn50[openvino]')"
        if OPENVINO_PRECISION[runtime] == "bf16":
            from rn50.runtimes.openvino_runner import NO_BF16, cpu_capabilities

            if "BF16" not in cpu_capabilities():
                return NO_BF16
        return None
    if runtime == "torch-cuda":
        import torch

        return None if torch.cuda.is_available() else "no CUDA GPU visible to torch"
    if runtime == "torch-cpu":
        return None
    raise UsageError(f"unknown runtime {runtime!r}", fix=f"use one of {', '.join(PROFILE_RUNTIMES)}")


def shown_name(runtime: str) -> str:
    """The name results of ``runtime`` are labelled with: ``tensorrt`` becomes ``tensorrt-standin`` when
    the TensorRT loaded here is rn50's test stand-in."""
    if runtime == TENSORRT:
        from rn50.runtimes.trt_env import runtime_name, tensorrt_reason

        return runtime if tensorrt_reason() is not None else runtime_name()
    return runtime


def make_runner(target: Target, *, threads: int | None = None, model: Callable[[], Any] | None = None) -> Runner:
    """The runner for ``target``; ``model`` loads the PyTorch model for a torch target."""
    if target.runtime in TORCH_RUNTIMES:
        from rn50.runtimes.torch_runner import TorchRunner

        if model is None:
            raise ValueError(f"{target.runtime} needs the PyTorch model: pass model=")
        return TorchRunner(model(), device="cuda" if target.runtime == "torch-cuda" else "cpu", label=target.runtime)
    if target.path is None:
        raise ValueError(f"{target.label} names no file")
    if target.runtime in OPENVINO_RUNTIMES:
        from rn50.runtimes.openvino_runner import OpenVinoRunner

        return OpenVinoRunner(target.path, precision=OPENVINO_PRECISION[target.runtime], threads=threads, label=target.label)
    if target.runtime in ONNX_RUNTIMES:
        from rn50.runtimes.ort_runner import OnnxRuntimeRunner, cuda_options_for

        return OnnxRuntimeRunner(target.path, provider=PROVIDER_OF[target.runtime], threads=threads, label=target.label,
                                 cuda_options=cuda_options_for(target.precision))  # fmt: skip
    from rn50.runtimes.trt_runner import TensorRTRunner

    return TensorRTRunner(target.path, label=target.label)

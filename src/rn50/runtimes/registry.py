"""Which runtimes can run which artifact here, and a runner for each (heavy imports deferred)."""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from rn50.errors import UsageError
from rn50.runtimes.qdq_form import CPU_TARGETS, QDQ_TENSORRT
from rn50.runtimes.trt_env import RUNTIME as TENSORRT
from rn50.runtimes.trt_env import TEST_DOUBLES
from rn50.words import cmd, opt

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable
    from pathlib import Path

    from rn50.runtimes.base import Runner
    from rn50.runtimes.kinds import Device
    from rn50.runtimes.qdq_form import QdqForm

TORCH_ARTIFACT = "pytorch-fp32"  # the PyTorch model itself, as a profile pair
TORCH = "model"  # what a PyTorch runtime reads: the model itself, not a file


@dataclass(frozen=True)
class RuntimeSpec:
    """One runtime, everything rn50 needs to know of it. Parity and profile plans, ``rn50 serve``, doctor, the CLI's
    help and the README's runtime list are read from the table of these (``RUNTIME_TABLE``): a new runtime is its
    runner module and one row."""

    name: str  # as users type it (--runtime) and as results are labelled
    summary: str  # one line: the CLI's help and the README's list
    reads: tuple[str, ...]  # artifact kinds it runs (rn50.runtimes.kinds), or (TORCH,) for the PyTorch model
    device: Device  # where it runs, the profile's timing modes, and Triton's instance kind in rn50 serve
    unavailable: Callable[[], str | None]  # why it cannot run on this machine (None: it may; loading can still fail)
    runner: Callable[[Pair, int | None, Callable[[], Any] | None], Runner]  # (pair, threads, PyTorch model loader)
    # The precision results on an artifact of a precision are judged and labelled as (None: it does not run it).
    judged_as: Callable[[str], str | None] = lambda precision: precision  # noqa: E731
    serves: tuple[str, ...] = ()  # artifact kinds `rn50 serve` runs on it unless --runtime says otherwise
    # INT8 forms its kernels compute other than the file says on CPUs of the avx2 class (x86 without VNNI: u8×s8
    # pairs summed in a saturating 16-bit intermediate), and how its cause names those kernels.
    saturates_on_avx2: Callable[[QdqForm], bool] | None = None
    kernels: str = ""
    # Eager PyTorch: parity's reference and profile's baseline, never a parity pair. A role, not what it reads:
    # compiled PyTorch reads the model too and is judged against the reference like any runtime.
    reference: bool = False
    # Run when --runtime is not given. False: named only (torch.compile: a compile per batch size, ~10 s each for
    # ResNet-50 on 2 cores, measured in benchmarks/bench_torch_compile.py).
    by_default: bool = True


def _ort(provider: str) -> Callable[[], str | None]:
    def unavailable() -> str | None:
        if importlib.util.find_spec("onnxruntime") is None:
            return "onnxruntime is not installed (pip install onnxruntime)"
        import onnxruntime

        from rn50.runtimes.ort_runner import PROVIDERS, tensorrt_libraries_missing

        if PROVIDERS[provider] not in onnxruntime.get_available_providers():
            return f"this onnxruntime build has no {PROVIDERS[provider]} (pip install 'rn50[gpu]' on a CUDA host)"
        if provider == "trt":  # probed first: onnxruntime would print its own load errors, then fall back to the CPU
            missing = tensorrt_libraries_missing()
            return f"{missing}, which ONNX Runtime's TensorRT provider loads" if missing else None
        return None

    return unavailable


def _ort_runner(provider: str) -> Callable[[Pair, int | None, Callable[[], Any] | None], Runner]:
    def make(pair: Pair, threads: int | None, _model: Callable[[], Any] | None) -> Runner:
        from rn50.runtimes.ort_runner import OnnxRuntimeRunner, cuda_options_for

        return OnnxRuntimeRunner(
            _file(pair),
            provider=provider,
            threads=threads,
            label=pair.label,
            cuda_options=cuda_options_for(pair.precision),
        )

    return make


def _openvino(precision: str) -> Callable[[], str | None]:
    def unavailable() -> str | None:
        if importlib.util.find_spec("openvino") is None:
            return "openvino is not installed (pip install 'rn50[openvino]')"
        if precision == "bf16":
            from rn50.runtimes.openvino_runner import NO_BF16, cpu_capabilities

            if "BF16" not in cpu_capabilities():
                return NO_BF16
        return None

    return unavailable


def _openvino_runner(precision: str) -> Callable[[Pair, int | None, Callable[[], Any] | None], Runner]:
    def make(pair: Pair, threads: int | None, _model: Callable[[], Any] | None) -> Runner:
        from rn50.runtimes.openvino_runner import OpenVinoRunner

        return OpenVinoRunner(_file(pair), precision=precision, threads=threads, label=pair.label)

    return make


def _torch(device: str) -> Callable[[], str | None]:
    def unavailable() -> str | None:
        if device == "cpu":
            return None
        import torch

        return None if torch.cuda.is_available() else "no CUDA GPU visible to torch"

    return unavailable


def _torch_runner(
    device: str, *, compiled: bool = False, freezing: bool = True
) -> Callable[[Pair, int | None, Callable[[], Any] | None], Runner]:
    def make(pair: Pair, threads: int | None, model: Callable[[], Any] | None) -> Runner:
        from rn50.runtimes.torch_runner import TorchCompileDefaultRunner, TorchCompileRunner, TorchRunner

        if model is None:
            raise ValueError(f"{pair.runtime} needs the PyTorch model: pass model=")
        kind = (TorchCompileRunner if freezing else TorchCompileDefaultRunner) if compiled else TorchRunner
        return kind(model(), device=device, label=pair.runtime, threads=threads)

    return make


def _inductor_cpu() -> str | None:
    """Inductor writes C++ for the CPU and builds it with the machine's compiler (CXX, else c++/g++/clang++)."""
    import os
    import shutil

    names = [os.environ["CXX"]] if os.environ.get("CXX") else ["c++", "g++", "clang++"]
    if not any(shutil.which(n) for n in names):
        found = " or ".join(names)
        return f"torch.compile's CPU code generation needs a C++ compiler ({found} not found: apt install g++)"
    return None


def _aoti_runner(pair: Pair, threads: int | None, _model: Callable[[], Any] | None) -> Runner:
    from rn50.runtimes.aoti_runner import AotiRunner

    return AotiRunner(_file(pair), threads=threads, label=pair.label)


def _tensorrt() -> str | None:
    from rn50.runtimes.trt_env import tensorrt_reason

    return tensorrt_reason()


def _tensorrt_runner(pair: Pair, _threads: int | None, _model: Callable[[], Any] | None) -> Runner:
    from rn50.runtimes.trt_runner import TensorRTRunner

    return TensorRTRunner(_file(pair), label=pair.label)


def _file(pair: Pair) -> Path:
    if pair.path is None:
        raise ValueError(f"{pair.label} names no file")
    return pair.path


# Measured (README, "INT8 on every CPU"): on CPUs without VNNI ONNX Runtime saturates on uint8 activations with
# full-range weights and runs int8 activations (its s8/s8 path) faithfully; OpenVINO saturates on full-range weights
# with either activation type; 7-bit weights are faithful on both.
RUNTIME_TABLE: dict[str, RuntimeSpec] = {
    spec.name: spec
    for spec in (
        RuntimeSpec(
            "torch-cpu",
            "PyTorch eager on the CPU: the reference, and the baseline speed",
            (TORCH,),
            "cpu",
            _torch("cpu"),
            _torch_runner("cpu"),
            reference=True,
        ),
        RuntimeSpec(
            "torch-cuda",
            "PyTorch eager on a CUDA GPU, TF32 off",
            (TORCH,),
            "gpu",
            _torch("cuda"),
            _torch_runner("cuda"),
            reference=True,
        ),
        RuntimeSpec(
            "torch-compile-cpu",
            "torch.compile (Inductor, freezing) on the CPU, FP32, each batch size compiled at its first run: "
            f"named only ({opt('runtime')})",
            (TORCH,),
            "cpu",
            _inductor_cpu,
            _torch_runner("cpu", compiled=True),
            by_default=False,
        ),
        RuntimeSpec(
            "torch-compile-cpu-default",
            f"torch.compile with Inductor's defaults (no freezing) on the CPU, FP32: named only ({opt('runtime')})",
            (TORCH,),
            "cpu",
            _inductor_cpu,
            _torch_runner("cpu", compiled=True, freezing=False),
            by_default=False,
        ),
        RuntimeSpec(
            "aoti-cpu",
            f"AOTInductor packages ({cmd('export', pt2=True)}; INT8: {cmd('quantize', int8=True, pt2=True)}): PyTorch "
            "compiled ahead of time for this CPU",
            ("pt2",),
            "cpu",
            _inductor_cpu,
            _aoti_runner,
            serves=("pt2",),
        ),
        RuntimeSpec(
            "onnxruntime-cpu",
            "ONNX Runtime, CPU provider",
            ("onnx",),
            "cpu",
            _ort("cpu"),
            _ort_runner("cpu"),
            serves=("onnx",),
            saturates_on_avx2=lambda f: f.activations == "uint8" and f.weight_bits == 8,
            kernels="ONNX Runtime's u8s8 kernels",
        ),
        RuntimeSpec(
            "onnxruntime-cuda",
            "ONNX Runtime, CUDA provider (IOBinding; TF32 off, NHWC for FP16)",
            ("onnx",),
            "gpu",
            _ort("cuda"),
            _ort_runner("cuda"),
        ),
        RuntimeSpec(
            "onnxruntime-trt", "ONNX Runtime, TensorRT provider", ("onnx",), "gpu", _ort("trt"), _ort_runner("trt")
        ),
        RuntimeSpec(
            "openvino-cpu",
            "OpenVINO's CPU plugin at f32 inference precision (ONNX files and IR)",
            ("onnx", "ir"),
            "cpu",
            _openvino("f32"),
            _openvino_runner("f32"),
            serves=("ir",),
            saturates_on_avx2=lambda f: f.weight_bits == 8,
            kernels="OpenVINO's INT8 kernels",
        ),
        RuntimeSpec(
            "openvino-cpu-bf16",
            "OpenVINO's CPU plugin at bf16 inference precision (FP32 models only; judged as bf16)",
            ("onnx", "ir"),
            "cpu",
            _openvino("bf16"),
            _openvino_runner("bf16"),
            judged_as=lambda precision: "bf16" if precision == "fp32" else None,
        ),
        RuntimeSpec(
            TENSORRT,
            f"TensorRT engines ({cmd('build-trt')})",
            ("engine",),
            "gpu",
            _tensorrt,
            _tensorrt_runner,
            serves=("engine",),
        ),
    )
}


def spec(runtime: str) -> RuntimeSpec:
    """The table row of ``runtime`` (a test double's label: the row of the runtime it stands in for)."""
    name = TEST_DOUBLES[runtime][0] if runtime in TEST_DOUBLES else runtime
    if name not in RUNTIME_TABLE:
        raise UsageError(f"unknown runtime {runtime!r}", fix=f"use one of {', '.join(RUNTIME_TABLE)}")
    return RUNTIME_TABLE[name]


def runtime_names(
    *, reference: bool | None = None, device: str | None = None, by_default: bool | None = None
) -> tuple[str, ...]:
    """Runtimes of the table, in its order: ``reference`` False for parity's pairs (no eager PyTorch), True for the
    reference only; ``device`` "cpu" or "gpu"; ``by_default`` True: those run when --runtime is not given."""
    return tuple(
        s.name
        for s in RUNTIME_TABLE.values()
        if (reference is None or s.reference == reference)
        and (device is None or s.device == device)
        and (by_default is None or s.by_default == by_default)
    )


def describe_runtimes(names: Iterable[str] | None = None) -> str:
    """ "name (summary), …": the CLI's help for --runtime."""
    return "; ".join(f"{s.name} ({s.summary})" for s in RUNTIME_TABLE.values() if names is None or s.name in names)


def from_test_double(runtime: str) -> bool:
    """Whether results labelled ``runtime`` come from a test double wired in place of a runtime (never real)."""
    return runtime in TEST_DOUBLES


def double_notes(runtimes: Iterable[str]) -> list[str]:
    """What a report says under its table where a test double's results appear in it."""
    present = set(runtimes)
    return [note for label, (_, note) in TEST_DOUBLES.items() if label in present]


def reads(runtime: str) -> tuple[str, ...]:
    """The artifact kinds ``runtime`` runs."""
    return spec(runtime).reads


def is_gpu(runtime: str) -> bool:
    return spec(runtime).device == "gpu"


def result_precision(runtime: str, artifact_precision: str) -> str | None:
    """The precision ``runtime``'s results on an artifact are judged and labelled by; None: it does not apply."""
    return spec(runtime).judged_as(artifact_precision)


def saturates(runtime: str, form: QdqForm | None, cpu_class: str) -> bool:
    """Whether ``runtime``'s INT8 kernels on a CPU of ``cpu_class`` saturate on a file of ``form``."""
    from rn50.machine import AVX2

    rule = spec(runtime).saturates_on_avx2
    return form is not None and cpu_class == AVX2 and rule is not None and rule(form)


def fidelity_deviation(runtime: str, form: QdqForm | None, cpu_class: str) -> tuple[str, str]:
    """The likely cause of an INT8 runtime computing something other than its Q/DQ file, and the fix."""
    if not saturates(runtime, form, cpu_class):
        return (
            f"{runtime} does not compute this file as its Q/DQ nodes say (more than integer rounding explains: a "
            "fusion "
            "that changes the math, a wrong build or a runtime bug)",
            f"compare the file on another runtime ({cmd('parity', artifact='…')}) and report it to the runtime's "
            "maintainers "
            "with parity.json; the file's own error is judged apart (file vs FP32)",
        )
    assert form is not None
    cause = (
        f"{spec(runtime).kernels} saturate on this CPU (avx2 class: no VNNI, u8×s8 pairs summed in 16 bits) on this "
        "file's "
        f"full-range weights"
    )
    if form.target in CPU_TARGETS:
        made = f" (it was made for {form.cpu_class}-class CPUs)" if form.cpu_class else ""
        return (
            cause + made,
            f"re-run `{cmd('quantize', int8=True, cpu='avx2')}`: 7-bit weights, computed faithfully on every x86 CPU",
        )
    if form.target == QDQ_TENSORRT:
        return (
            cause + " (it is made for TensorRT)",
            f"on this CPU run the onnxruntime-cpu file made with `{cmd('quantize', int8=True, cpu='avx2')}` instead",
        )
    return (
        cause,
        "quantize weights to 7 bits for CPUs without VNNI (ONNX Runtime: reduce_range=True), or use "
        f"`{cmd('quantize', int8=True, cpu='avx2')}`",
    )


def label(runtime: str, artifact: str) -> str:
    """How a runtime × artifact pair is named everywhere: results, reports, progress, errors."""
    return f"{runtime} · {artifact}"


@dataclass(frozen=True)
class Pair:
    runtime: str
    precision: str
    artifact: str  # manifest name, or the file name for an explicit path
    path: Path | None  # None: the PyTorch model itself (a reference runtime)
    source: Path | None = None  # for an engine or IR: the ONNX file it was made from
    sha256: str | None = None  # of ``path``, as checked against the manifest
    form: QdqForm | None = None  # INT8: the integer form of its Q/DQ file (``path``, or ``source``)

    @property
    def qdq_file(self) -> Path | None:
        """INT8: the file whose own semantics this target's results are compared with: a Q/DQ ONNX file, or an INT8
        AOTInductor package's quantized program."""
        from rn50.runtimes.pt2_package import is_program

        if self.precision != "int8":
            return None
        qdq = self.source or self.path
        return qdq if qdq is not None and (qdq.suffix == ".onnx" or is_program(qdq)) else None

    @property
    def label(self) -> str:
        return label(self.runtime, self.artifact)


def check_names(kind: str, names: list[str] | None, known: tuple[str, ...] | None = None) -> None:
    """Refuse names that are not in ``known`` (``kind``: "runtime", "precision"; default: parity's runtimes)."""
    known = runtime_names(reference=False) if known is None else known
    unknown = [n for n in names or [] if n not in known]
    if unknown:
        raise UsageError(f"unknown {kind}(s) {', '.join(unknown)}", fix=f"use any of {', '.join(known)}")


def unavailable_reason(runtime: str) -> str | None:
    """Why ``runtime`` cannot run on this machine, or None if it may (loading can still fail)."""
    return spec(runtime).unavailable()


def shown_name(runtime: str) -> str:
    """The name results of ``runtime`` are labelled with: a test double's label where the module loaded for it
    is one (``trt_env.runtime_name``)."""
    if runtime == TENSORRT:
        from rn50.runtimes.trt_env import runtime_name, tensorrt_reason

        return runtime if tensorrt_reason() is not None else runtime_name()
    return runtime


def pytorch_path(runtime: str) -> bool:
    """Whether ``runtime`` is PyTorch's own deployment path (compiled in process, or an AOTInductor package), not the
    reference and not an exported engine's."""
    s = spec(runtime)
    return not s.reference and bool({TORCH, "pt2"} & set(s.reads))


def make_runner(pair: Pair, *, threads: int | None = None, model: Callable[[], Any] | None = None) -> Runner:
    """The runner for ``pair``; ``model`` loads the PyTorch model for a PyTorch pair."""
    return spec(pair.runtime).runner(pair, threads, model)

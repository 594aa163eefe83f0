"""PyTorch's ahead-of-time path: the model exported with ``torch.export`` (dynamic batch) and compiled by
AOTInductor into a ``.pt2`` package for this machine's CPU (``torch._inductor.aoti_compile_and_package``), which
``aoti_load_package`` (Python) or ``AOTIModelPackageLoader`` (C++, no Python) runs — in FP32, and in INT8 after
PT2E post-training quantization with the X86 Inductor quantizer (torchao), calibrated on rn50's calibration images.

A package is machine code for one torch version and one CPU instruction set (Inductor picks the widest vector ISA
this CPU has: AVX-512, AMX…), so the sidecar next to it (``<file>.json``, ``rn50.runtimes.pt2_package``) records
both; a package made elsewhere is refused with the reason, never run into an illegal instruction. The FP32 package is
verified against eager PyTorch before it lands, as the ONNX file is. The INT8 package comes with its quantized
program (``torch.export.save``: quantize/dequantize operators and float ones, run as written by PyTorch), which is
what the package says it computes — the INT8 file's own semantics, as a Q/DQ ONNX file's are: the package is
verified against it (the ``fidelity`` thresholds), and the program's error against FP32 is the quantization's.
"""

from __future__ import annotations

import os
import resource
import shutil
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rn50.artifacts import PARTIAL, Artifact, dist_version, sha256_file, versions
from rn50.errors import check_interrupt, uninterrupted
from rn50.metrics import FIDELITY_THRESHOLDS, OutputMetrics, Thresholds, compare
from rn50.runtimes.pt2_package import (
    DYNAMIC_MODEL,
    PROGRAM_KIND,
    Pt2Sidecar,
    import_torchao,
    program_path,
    sidecar_path,
    static_model,
    this_isa,
)

if TYPE_CHECKING:
    from collections.abc import Iterable

    import numpy as np
    from torch import nn
    from torch.export import ExportedProgram

    from rn50.artifacts import WorkDir

PT2_NAME = "pt2-fp32-cpu"
PT2_INT8_NAME = "pt2-int8-cpu"
PROGRAM_INT8_NAME = "pt2-int8-program"  # the INT8 package's quantized program: its own semantics
KIND = "pt2"
MAX_BATCH = 64  # the exported program's batch dimension: 1..MAX_BATCH
VERIFY_CROPS = 8
# Batch sizes compiled apart as well, beside the dynamic batch: Inductor's code for a dynamic batch is slower at batch
# 1 (measured, ResNet-50 FP32, 2 cores: 36.4-38.6 ms dynamic, 30.1-31.1 ms static, torch.compile 29.0 ms); at batch
# 8 the dynamic code is as fast as torch.compile's (184.8 vs 190.3 ms).
STATIC_BATCHES = (1,)
CALIBRATION_BATCH = 16  # images per observed batch (PT2E's observers see every image either way)
PT2_THRESHOLDS = Thresholds(min_cosine=0.999999, max_abs=1e-4)  # FP32 code against FP32 eager: rounding only
QUANTIZER = "PT2E, X86InductorQuantizer (torchao): static, per-channel int8 weights, uint8 activations"


@dataclass(frozen=True)
class Pt2Result:
    path: Path
    sidecar: Pt2Sidecar
    metrics: OutputMetrics  # FP32: the package vs eager PyTorch; INT8: the package vs its quantized program
    failures: tuple[str, ...]
    program: Path | None = None  # INT8: the quantized program (the package's own semantics)
    quantization: OutputMetrics | None = None  # INT8: the program vs eager PyTorch FP32 (the quantization's error)
    budget_failures: tuple[str, ...] | None = None  # INT8 with a budget: what the program misses of it (() met)
    float_modules: tuple[str, ...] = ()  # INT8: the layers left out of INT8, by PyTorch module

    @property
    def sha256(self) -> str:
        return self.sidecar.package_sha256

    @property
    def verified(self) -> bool:
        return not self.failures

    @property
    def against(self) -> str:
        """What the package was verified against."""
        return "PyTorch" if self.program is None else f"its quantized program ({self.program.name})"


def export_program(
    model: nn.Module, *, max_batch: int = MAX_BATCH, strict: bool = False, batch: int | None = None
) -> ExportedProgram:
    """``model`` (in eval mode) captured by ``torch.export`` with a dynamic batch 1..``max_batch``, or for one
    ``batch`` size."""
    import torch

    if batch is not None:
        with torch.no_grad():
            return torch.export.export(model, (torch.zeros(batch, 3, 224, 224),), strict=strict)
    dim = torch.export.Dim("batch", min=1, max=max_batch)
    with torch.no_grad():
        return torch.export.export(model, (torch.zeros(2, 3, 224, 224),), dynamic_shapes=({0: dim},), strict=strict)


def compile_programs(programs: dict[str, ExportedProgram], package: Path) -> tuple[float, float]:
    """``programs`` (by model name) compiled by AOTInductor into one ``package``; (seconds, the process's peak RSS in
    MB after it: a high-water mark, so it includes whatever the process did before, e.g. the ONNX export). The way
    ``aoti_compile_and_package``'s documentation gives for several models in one package; ``aoti_load_package``
    (and ``AOTIModelPackageLoader`` in C++) load ``DYNAMIC_MODEL``, ``load_package(path, name)`` the others."""
    import torch
    from torch._inductor import config as inductor_config
    from torch._inductor.package import package_aoti

    start = time.perf_counter()
    # Freezing (weights folded in as constants, prepacked for the CPU's kernels), as torch-compile-cpu runs:
    # measured on ResNet-50, 2 cores, 56.1 → 48.9 ms at batch 1 and 313.8 → 252.3 ms at batch 8. INT8 needs it:
    # it is the pass that lowers quantize/dequantize around a convolution into oneDNN's int8 convolution.
    files: dict[str, Any] = {}
    with torch.no_grad(), inductor_config.patch(freezing=True):
        for name, program in programs.items():
            args, kwargs = program.example_inputs
            module = program.module(check_guards=False)
            files[name] = torch._inductor.aot_compile(module, args, kwargs, options={"aot_inductor.package": True})
    package_aoti(str(package), files)
    return time.perf_counter() - start, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def programs_of(model: nn.Module, *, strict: bool = False) -> dict[str, ExportedProgram]:
    """The programs a package holds: the dynamic batch, and each of ``STATIC_BATCHES`` on its own."""
    return {DYNAMIC_MODEL: export_program(model, strict=strict)} | {
        static_model(b): export_program(model, strict=strict, batch=b) for b in STATIC_BATCHES
    }


def compile_package(model: nn.Module, package: Path) -> tuple[float, float]:
    """``model`` exported and compiled into ``package``: (seconds, peak RSS in MB), as ``compile_programs``."""
    start = time.perf_counter()
    _, peak = compile_programs(programs_of(model.eval()), package)
    return time.perf_counter() - start, peak


def quantize_model(
    model: nn.Module,
    calibration: Iterable[np.ndarray],
    *,
    reduce_range: bool,
    float_modules: tuple[str, ...] = (),
    max_batch: int = MAX_BATCH,
) -> Any:
    """PT2E post-training quantization: ``model`` exported, annotated by the X86 Inductor quantizer (its default:
    static, per-channel weights), observed on the ``calibration`` batches and converted: a module of quantize/
    dequantize and float operators, to be exported again (``programs_of``) for AOTInductor; ``float_modules`` (PyTorch
    module names) left out of INT8. ``reduce_range``: 7-bit
    activations, which the quantizer's documentation asks for on CPUs without VNNI (u8×s8 pair sums then stay within
    the 16 bits those CPUs' kernels sum pairs in; rn50's avx2 class)."""
    import torch

    import_torchao()
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e
    from torchao.quantization.pt2e.quantizer import x86_inductor_quantizer as x86

    quantizer = x86.X86InductorQuantizer()
    quantizer.set_global(x86.get_default_x86_inductor_quantization_config(reduce_range=reduce_range))
    for name in float_modules:  # left out of INT8: runs in float between its neighbours' dequantize and quantize
        quantizer.set_module_name_qconfig(name, None)
    # strict: TorchDynamo records each call of a module apart (source_fn_stack), which the quantizer's fusion patterns
    # need — non-strict export groups a block's three calls of its one ReLU module into one partition, and the
    # quantizer refuses it ("Input partition has more than one output node"; measured, torch 2.13, torchao 0.18).
    captured = export_program(model.eval(), max_batch=max_batch, strict=True).module()
    prepared = prepare_pt2e(captured, quantizer)
    with torch.no_grad():
        for batch in calibration:
            prepared(torch.from_numpy(batch))
        converted = convert_pt2e(prepared)
    _drop_unused_parameters(converted)
    return converted


def layer_modules(model: nn.Module) -> list[str]:
    """The model's layers PT2E quantizes, by module name: its convolutions and linear layers."""
    from torch import nn

    return [name for name, m in model.named_modules() if isinstance(m, (nn.Conv2d, nn.Linear))]


def classifier_module(model: nn.Module) -> str | None:
    """The classifier: the model's last linear layer (``fc``), kept in float as rn50's ONNX files keep it."""
    from torch import nn

    return next((name for name, m in reversed(list(model.named_modules())) if isinstance(m, nn.Linear)), None)


def _drop_unused_parameters(module: Any) -> None:
    """The float weights conversion replaced by their int8 copies: still attributes of the converted module, so the
    export would carry them (measured on ResNet-50: a 130 MB program, 102 MB of it float weights no operator reads)."""
    module.graph.eliminate_dead_code()
    used = {n.target for n in module.graph.nodes if n.op == "get_attr"}
    for name, _ in list(module.named_parameters()):
        if name not in used:
            *path, leaf = name.split(".")
            owner = module
            for part in path:
                owner = getattr(owner, part)
            delattr(owner, leaf)
    module.recompile()


def _evaluation_crops(count: int) -> np.ndarray:
    """The first ``count`` held-apart crops (a prefix of any larger count's: ``sample_crops`` draws them in order)."""
    import numpy as np

    from rn50.samples import sample_crops

    return np.ascontiguousarray(sample_crops(count, split="evaluation"))


def _eager(model: nn.Module, crops: np.ndarray) -> np.ndarray:
    from rn50.runtimes.torch_runner import TorchRunner

    with TorchRunner(model) as eager:
        return eager.infer({"input": crops})["logits"]


def _run_package(package: Path, crops: np.ndarray) -> np.ndarray:
    """Every crop through the dynamic-batch model, then the first crops through each static one (in that order)."""
    import numpy as np
    import torch
    from torch._inductor.package import load_package

    with torch.inference_mode():
        out = [load_package(str(package), DYNAMIC_MODEL)(torch.from_numpy(crops)).numpy()]
        for b in STATIC_BATCHES:
            out.append(load_package(str(package), static_model(b))(torch.from_numpy(crops[:b])).numpy())
    return np.concatenate(out)


def _as_run(reference: np.ndarray) -> np.ndarray:
    """``reference`` in ``_run_package``'s order."""
    import numpy as np

    return np.concatenate([reference, *(reference[:b] for b in STATIC_BATCHES)])


def _sidecar(
    staged: Path, seconds: float, peak: float, classes: int, *, precision: str = "fp32", quantize_s: float | None = None
) -> Pt2Sidecar:
    """What the staged package was compiled for and what it cost, saved beside it."""
    import torch

    sidecar = Pt2Sidecar(
        torch=torch.__version__,
        device="cpu",
        isa=this_isa(),
        max_batch=MAX_BATCH,
        static_batches=list(STATIC_BATCHES),
        compile_s=seconds,
        peak_rss_mb=peak,
        package_sha256=sha256_file(staged),
        classes=classes,
        precision=precision,
        quantize_s=quantize_s,
    )
    sidecar.save(sidecar_path(staged))
    return sidecar


def write_pt2(workdir: WorkDir, model: nn.Module, *, stem: str, parent_sha256: str | None) -> Pt2Result:
    """Compile ``model`` for this CPU into ``<stem>.fp32.cpu.pt2``, verify it against eager PyTorch, and land the
    package, its sidecar and its manifest entry together."""
    target = workdir.path(f"{stem}.fp32.cpu.pt2")
    staging = Path(tempfile.mkdtemp(prefix=".pt2-", suffix=PARTIAL, dir=workdir.root))
    try:
        staged = staging / target.name
        seconds, peak = compile_package(model, staged)
        crops = _evaluation_crops(VERIFY_CROPS)
        got = _run_package(staged, crops)
        metrics = compare(got, _as_run(_eager(model, crops)))
        failures = tuple(PT2_THRESHOLDS.failures(metrics))
        sidecar = _sidecar(staged, seconds, peak, int(got.shape[-1]))
        check_interrupt()
        with uninterrupted():  # the package, its sidecar and the manifest entry land together
            _land(staged, target)
            workdir.record(_package_artifact(PT2_NAME, target, sidecar, parent_sha256, metrics, failures))
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return Pt2Result(target, sidecar, metrics, failures)


def write_pt2_int8(
    workdir: WorkDir,
    model: nn.Module,
    calibration: Iterable[np.ndarray],
    *,
    stem: str,
    parent_sha256: str | None,
    images: str,
    float_modules: tuple[str, ...] = (),
    budget: Thresholds | None = None,
    budget_crops: int = 0,
) -> Pt2Result:
    """PT2E INT8: ``model`` quantized on the ``calibration`` batches (``float_modules`` left out) into a program
    (``<stem>.int8.program.pt2``, the package's own semantics) compiled for this CPU into ``<stem>.int8.cpu.pt2``; the
    package verified against the program, the program measured against eager FP32 on parity's default crops (and,
    with ``budget``, judged on the budget search's crops); program, package, sidecar and manifest entries land
    together. ``images``: the calibration set, as the manifest records it."""
    import numpy as np
    import torch

    from rn50.feeds import DEFAULT_SAMPLE_COUNT
    from rn50.machine import AVX2, cpu_info

    target = workdir.path(f"{stem}.int8.cpu.pt2")
    program_file = program_path(target)
    staging = Path(tempfile.mkdtemp(prefix=".pt2-", suffix=PARTIAL, dir=workdir.root))
    try:
        staged, staged_program = staging / target.name, staging / program_file.name
        start = time.perf_counter()
        reduce_range = str(cpu_info()["int8_class"]) == AVX2
        programs = programs_of(
            quantize_model(model, calibration, reduce_range=reduce_range, float_modules=float_modules)
        )
        quantize_s = time.perf_counter() - start
        program = programs[DYNAMIC_MODEL]
        torch.export.save(program, str(staged_program))
        seconds, peak = compile_programs(programs, staged)
        # The program and eager PyTorch once, on parity's default crops (and the budget search's, with a budget); the
        # package is verified on their first VERIFY_CROPS, the crops the FP32 package is verified on.
        crops = _evaluation_crops(max(DEFAULT_SAMPLE_COUNT, VERIFY_CROPS, budget_crops if budget is not None else 0))
        module = program.module()
        with torch.no_grad():
            batches = np.array_split(crops, -(-len(crops) // CALIBRATION_BATCH))
            semantics = np.concatenate([module(torch.from_numpy(b)).numpy() for b in batches])
        got = _run_package(staged, crops[:VERIFY_CROPS])
        metrics = compare(got, _as_run(semantics[:VERIFY_CROPS]))
        failures = tuple(FIDELITY_THRESHOLDS.failures(metrics))
        reference = _eager(model, crops)
        quantization = compare(semantics[:DEFAULT_SAMPLE_COUNT], reference[:DEFAULT_SAMPLE_COUNT])
        missed = None
        if budget is not None:  # judged on the budget search's crops
            missed = tuple(budget.failures(compare(semantics[:budget_crops], reference[:budget_crops])))
        program_sha = sha256_file(staged_program)
        sidecar = _sidecar(staged, seconds, peak, int(got.shape[-1]), precision="int8", quantize_s=quantize_s)
        config = {
            "quantizer": QUANTIZER,
            "activations": "7-bit (reduce_range: a CPU without VNNI)" if reduce_range else "8-bit",
            "calibration": images,
            "max_batch": MAX_BATCH,
            "float_modules": list(float_modules),
        } | ({"budget": budget.describe()} if budget is not None else {})
        check_interrupt()
        with uninterrupted():  # the program, the package, its sidecar and the manifest entries land together
            os.replace(staged_program, program_file)  # the program first: a package is never left without it
            _land(staged, target)
            workdir.record(
                Artifact(
                    PROGRAM_INT8_NAME,
                    program_file.name,
                    PROGRAM_KIND,
                    "int8",
                    program_sha,
                    parent_sha256,
                    config | {"exporter": "torch.export (PT2E quantized program)"},
                    versions() | {"torchao": dist_version("torchao")},
                    verified=True,
                    extra={
                        "vs_fp32_cosine_mean": quantization.cosine_mean,
                        "vs_fp32_cosine_min": quantization.cosine_min,
                    },
                )
            )
            workdir.record(
                _package_artifact(
                    PT2_INT8_NAME, target, sidecar, program_sha, metrics, failures, config=config, verify="fidelity"
                )
            )
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return Pt2Result(target, sidecar, metrics, failures, program_file, quantization, missed, float_modules)


def _land(staged: Path, target: Path) -> None:
    os.replace(sidecar_path(staged), sidecar_path(target))
    os.replace(staged, target)


def _package_artifact(
    name: str,
    target: Path,
    sidecar: Pt2Sidecar,
    parent_sha256: str | None,
    metrics: OutputMetrics,
    failures: tuple[str, ...],
    *,
    config: dict[str, Any] | None = None,
    verify: str = "pytorch",
) -> Artifact:
    side = {k: v for k, v in asdict(sidecar).items() if k != "package_sha256"}
    return Artifact(
        name,
        target.name,
        KIND,
        sidecar.precision,
        sidecar.package_sha256,
        parent_sha256,
        {"exporter": "torch.export + AOTInductor", "max_batch": MAX_BATCH, "device": "cpu"} | (config or {}),
        versions(),
        verified=not failures,
        extra={"verified_against": verify, "verify_max_abs": metrics.max_abs, "verify_cosine_min": metrics.cosine_min}
        | side,
    )

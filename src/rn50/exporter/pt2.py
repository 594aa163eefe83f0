"""PyTorch's ahead-of-time path: the model exported with ``torch.export`` (dynamic batch) and compiled by
AOTInductor into a ``.pt2`` package for this machine's CPU (``torch._inductor.aoti_compile_and_package``), which
``aoti_load_package`` (Python) or ``AOTIModelPackageLoader`` (C++, no Python) runs.

A package is machine code for one torch version and one CPU instruction set (Inductor picks the widest vector ISA
this CPU has: AVX-512, AMX…), so the sidecar next to it (``<file>.json``, ``rn50.runtimes.pt2_package``) records
both; a package made elsewhere is refused with the reason, never run into an illegal instruction. The package is
verified against eager PyTorch before it lands, as the ONNX file is.
"""

from __future__ import annotations

import os
import resource
import shutil
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from rn50.artifacts import PARTIAL, Artifact, sha256_file, versions
from rn50.errors import check_interrupt, uninterrupted
from rn50.metrics import OutputMetrics, Thresholds, compare
from rn50.runtimes.pt2_package import Pt2Sidecar, sidecar_path, this_isa

if TYPE_CHECKING:
    from torch import nn

    from rn50.artifacts import WorkDir

PT2_NAME = "pt2-fp32-cpu"
KIND = "pt2"
MAX_BATCH = 64  # the exported program's batch dimension: 1..MAX_BATCH
VERIFY_CROPS = 8
PT2_THRESHOLDS = Thresholds(min_cosine=0.999999, max_abs=1e-4)  # FP32 code against FP32 eager: rounding only


@dataclass(frozen=True)
class Pt2Result:
    path: Path
    sidecar: Pt2Sidecar
    metrics: OutputMetrics
    failures: tuple[str, ...]

    @property
    def sha256(self) -> str:
        return self.sidecar.package_sha256

    @property
    def verified(self) -> bool:
        return not self.failures


def compile_package(model: nn.Module, package: Path, *, max_batch: int = MAX_BATCH) -> tuple[float, float]:
    """``model`` exported and compiled into ``package``; (seconds, the process's peak RSS in MB after it: a high-water
    mark, so it includes whatever the process did before, e.g. the ONNX export)."""
    import torch
    from torch._inductor import config as inductor_config

    start = time.perf_counter()
    example = torch.zeros(2, 3, 224, 224)
    batch = torch.export.Dim("batch", min=1, max=max_batch)
    with torch.no_grad():
        program = torch.export.export(model.eval(), (example,), dynamic_shapes=({0: batch},))
        # Freezing (weights folded in as constants, prepacked for the CPU's kernels), as torch-compile-cpu runs:
        # measured on ResNet-50, 2 cores, 56.1 → 48.9 ms at batch 1 and 313.8 → 252.3 ms at batch 8.
        with inductor_config.patch(freezing=True):
            torch._inductor.aoti_compile_and_package(program, package_path=str(package))
    return time.perf_counter() - start, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def write_pt2(workdir: WorkDir, model: nn.Module, *, stem: str, parent_sha256: str | None) -> Pt2Result:
    """Compile ``model`` for this CPU into ``<stem>.fp32.cpu.pt2``, verify it against eager PyTorch, and land the
    package, its sidecar and its manifest entry together."""
    import numpy as np
    import torch

    from rn50.runtimes.torch_runner import TorchRunner
    from rn50.samples import sample_crops

    target = workdir.path(f"{stem}.fp32.cpu.pt2")
    staging = Path(tempfile.mkdtemp(prefix=".pt2-", suffix=PARTIAL, dir=workdir.root))
    try:
        staged = staging / target.name
        seconds, peak = compile_package(model, staged)
        crops = np.ascontiguousarray(sample_crops(VERIFY_CROPS, split="evaluation"))
        with TorchRunner(model) as eager:
            reference = eager.infer({"input": crops})["logits"]
        with torch.inference_mode():
            got = torch._inductor.aoti_load_package(str(staged))(torch.from_numpy(crops)).numpy()
        metrics = compare(got, reference)
        failures = tuple(PT2_THRESHOLDS.failures(metrics))
        sha = sha256_file(staged)
        sidecar = Pt2Sidecar(torch.__version__, "cpu", this_isa(), MAX_BATCH, seconds, peak, sha)
        sidecar.save(sidecar_path(staged))
        check_interrupt()
        with uninterrupted():  # the package, its sidecar and the manifest entry land together
            os.replace(sidecar_path(staged), sidecar_path(target))
            os.replace(staged, target)
            workdir.record(
                Artifact(
                    PT2_NAME,
                    target.name,
                    KIND,
                    "fp32",
                    sha,
                    parent_sha256,
                    {"exporter": "torch.export + AOTInductor", "max_batch": MAX_BATCH, "device": "cpu"},
                    versions(),
                    verified=not failures,
                    extra={"verify_max_abs": metrics.max_abs, "verify_cosine_min": metrics.cosine_min}
                    | {k: v for k, v in asdict(sidecar).items() if k != "package_sha256"},
                )
            )
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return Pt2Result(target, sidecar, metrics, failures)

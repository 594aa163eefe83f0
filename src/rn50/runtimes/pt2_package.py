"""What an AOTInductor package (``.pt2``, ``rn50 export --pt2``, ``rn50 quantize --int8 --pt2``) was compiled for,
in the sidecar next to it (``<file>.json``): the torch version and the CPU vector ISA. A package is machine code for
both, so one made by
another torch or for another CPU is refused with the reason before it is loaded (``check_sidecar``), never run
into an illegal instruction."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING

from rn50.artifacts import atomic_write_text
from rn50.errors import EnvironmentProblem, UsageError
from rn50.words import cmd

if TYPE_CHECKING:
    from pathlib import Path


@dataclass(frozen=True)
class Pt2Sidecar:
    """What a package was compiled for: the torch version and the CPU vector ISA, and what compiling cost."""

    torch: str
    device: str
    isa: str
    max_batch: int
    compile_s: float
    peak_rss_mb: float  # the compiling process's peak RSS (a high-water mark)
    package_sha256: str
    classes: int = 0  # the logits' width (0: not recorded)
    precision: str = "fp32"  # int8: PT2E-quantized, with its program beside it (``program_path``)
    quantize_s: float | None = None  # INT8: PT2E's export, calibration and conversion
    static_batches: list[int] = field(default_factory=list)  # compiled apart too (``static_model``), beside the dynamic

    def save(self, path: Path) -> None:
        atomic_write_text(path, json.dumps(asdict(self), indent=1, sort_keys=True) + "\n")

    @classmethod
    def load(cls, path: Path) -> Pt2Sidecar:
        try:
            return cls(**json.loads(path.read_text()))
        except (OSError, ValueError, TypeError) as e:
            raise UsageError(
                f"cannot read {path.name}, the record of what {path.stem} was compiled for ({e})",
                fix=f"make the package again: {cmd('export', pt2=True)}",
            ) from e


def sidecar_path(package: Path) -> Path:
    return package.with_name(package.name + ".json")


DYNAMIC_MODEL = "model"  # the package's model for any batch (the name aoti_load_package loads)


def static_model(batch: int) -> str:
    """The name of the package's model compiled for ``batch`` alone."""
    return f"batch{batch}"


PROGRAM_KIND = "pt2-program"  # a PT2E-quantized program (torch.export.save): an INT8 package's own semantics
PROGRAM_SUFFIX = ".program.pt2"


def program_path(package: Path) -> Path:
    """The quantized program an INT8 package was compiled from: ``resnet50.int8.cpu.pt2`` →
    ``resnet50.int8.program.pt2``."""
    return package.with_name(package.name.removesuffix(".cpu.pt2") + PROGRAM_SUFFIX)


def is_program(path: Path) -> bool:
    return path.name.endswith(PROGRAM_SUFFIX)


TORCHAO_INSTALL = "pip install 'rn50[pt2e]'"


def import_torchao() -> None:
    """torchao: PT2E quantization (``torch.ao``'s PT2E moved there) and the operators of a quantized program."""
    try:
        import torchao  # noqa: F401
    except ImportError as e:
        raise EnvironmentProblem(
            f"PyTorch's INT8 path (PT2E) needs torchao, which is not installed ({e})", fix=TORCHAO_INSTALL
        ) from e


def this_isa() -> str:
    """The vector ISA Inductor compiles for on this CPU (e.g. "avx512", "amx_tile"), "" where it has none."""
    from torch._inductor.cpu_vec_isa import pick_vec_isa

    return str(pick_vec_isa())


def check_sidecar(package: Path) -> Pt2Sidecar:
    """The package's sidecar, if the package was compiled for this torch and this CPU; else a one-line refusal."""
    import torch

    side = Pt2Sidecar.load(sidecar_path(package))
    if side.torch != torch.__version__:
        raise UsageError(
            f"{package.name} was compiled by torch {side.torch}; this machine has {torch.__version__}",
            fix=f"make the package again here: {remake(side.precision)}",
        )
    if side.isa != this_isa():
        raise UsageError(
            f"{package.name} was compiled for the CPU instruction set {side.isa or 'none'}; this CPU's is "
            f"{this_isa() or 'none'}",
            fix=f"make the package again on this machine: {remake(side.precision)}",
        )
    return side


def remake(precision: str) -> str:
    """The command that makes a package of ``precision``."""
    return str(cmd("quantize", int8=True, pt2=True) if precision == "int8" else cmd("export", pt2=True))


def sidecar_problem(package: Path, digest: str) -> str | None:
    """A package's sidecar: readable, and describing this package (what it was compiled for is checked when it is
    run: verify says whether the files are intact, not whether this machine can run them)."""
    try:
        sidecar = Pt2Sidecar.load(sidecar_path(package))
    except UsageError as e:
        return e.problem
    if sidecar.package_sha256 != digest:
        return f"{sidecar_path(package).name} describes another package (sha256 {sidecar.package_sha256[:12]})"
    return None

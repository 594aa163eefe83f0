"""What an AOTInductor package (``.pt2``, ``rn50 export --pt2``) was compiled for, in the sidecar next to it
(``<file>.json``): the torch version and the CPU vector ISA. A package is machine code for both, so one made by
another torch or for another CPU is refused with the reason before it is loaded (``check_sidecar``), never run
into an illegal instruction."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING

from rn50.artifacts import atomic_write_text
from rn50.errors import UsageError
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
            fix=f"make the package again here: {cmd('export', pt2=True)}",
        )
    if side.isa != this_isa():
        raise UsageError(
            f"{package.name} was compiled for the CPU instruction set {side.isa or 'none'}; this CPU's is "
            f"{this_isa() or 'none'}",
            fix=f"make the package again on this machine: {cmd('export', pt2=True)}",
        )
    return side


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

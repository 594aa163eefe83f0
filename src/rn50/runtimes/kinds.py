"""The kinds of model artifact, one row each: its file, the files that go with it, what its inputs and outputs are
read from, how Triton serves it, and how ``rn50 verify`` checks what is recorded beside it.

What runs a kind is the runtime table's (``registry.RUNTIME_TABLE``: each runtime ``reads`` kinds named here). A new
kind of artifact — an engine for another GPU, a compiled PyTorch package — is one row here plus its reader.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

from rn50.runtimes.model_io import engine_io, ir_io, onnx_io, pt2_io
from rn50.words import cmd

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping
    from pathlib import Path

    from rn50.runtimes.model_io import ModelIO

Device = Literal["cpu", "gpu"]
DEVICES: tuple[Device, ...] = ("cpu", "gpu")


@dataclass(frozen=True)
class Placement:
    """How one artifact is served by a stock Triton backend."""

    device: Device
    backend: str  # onnxruntime | tensorrt | openvino
    filename: str  # the file's name in the model's version folder
    accelerator: str | None = None  # TensorRT precision mode for ONNX Runtime's TensorRT accelerator


@dataclass(frozen=True)
class ModelKind:
    name: str  # as the manifest records it (Artifact.kind) and the runtime table's ``reads`` names it
    suffix: str  # of the file rn50 writes
    io: Callable[[Path], ModelIO] | None  # its inputs and outputs, read from the file (None: not read by rn50 yet)
    # Where Triton's stock backends run it, by precision ("int8/<Q/DQ form>" before "int8"; "*" for any precision).
    served: Mapping[str, tuple[Placement, ...]] = field(default_factory=dict)
    not_served: str = ""  # why Triton does not serve it, when ``served`` is empty
    # Other artifacts the model is made of: (suffix of their manifest name, suffix of their file).
    companions: tuple[tuple[str, str], ...] = ()
    # What ``rn50 verify`` checks beside the file's sha256: a problem with its sidecar, or None.
    sidecar_problem: Callable[[Path, str], str | None] | None = None
    batch_profile: bool = False  # its file fixes the batches it takes (an engine's optimisation profile)
    cpu_threads: bool = True  # a CPU thread count applies to what runs it

    def placements(self, precision: str, form: str | None = None) -> tuple[Placement, ...]:
        """Where Triton serves an artifact of this kind at ``precision`` (``form``: an INT8 file's Q/DQ target)."""
        keys = ([f"{precision}/{form}"] if form else []) + [precision, "*"]
        return next((self.served[k] for k in keys if k in self.served), ())

    def companion_names(self, artifact: str) -> list[str]:
        return [artifact + name_suffix for name_suffix, _ in self.companions]


def _engine_sidecar(engine: Path, digest: str) -> str | None:
    from rn50.runtimes.trt_plan import sidecar_problem

    return sidecar_problem(engine, digest)


def _pt2_sidecar(package: Path, digest: str) -> str | None:
    from rn50.runtimes.pt2_package import sidecar_problem

    return sidecar_problem(package, digest)


_ORT_CPU = Placement("cpu", "onnxruntime", "model.onnx")
_ORT_GPU = Placement("gpu", "onnxruntime", "model.onnx")

KINDS: dict[str, ModelKind] = {
    k.name: k
    for k in (
        ModelKind(
            "onnx",
            ".onnx",
            onnx_io,
            served={
                "fp32": (_ORT_CPU, _ORT_GPU),
                "fp16": (_ORT_GPU,),  # FP16 kernels on the CPU provider are slow reference code: GPU only
                "int8/onnxruntime-cpu": (_ORT_CPU,),  # u8/s8 Q/DQ: made for ONNX Runtime's CPU provider
                "int8": (Placement("gpu", "onnxruntime", "model.onnx", accelerator="INT8"),),  # the TensorRT form
            },
        ),
        ModelKind(
            "ir",
            ".xml",
            ir_io,
            served={"*": (Placement("cpu", "openvino", "model.xml"),)},
            companions=(("-weights", ".bin"),),  # an IR is its .xml and its .bin
        ),
        ModelKind(
            "engine",
            ".engine",
            engine_io,
            served={"*": (Placement("gpu", "tensorrt", "model.plan"),)},
            sidecar_problem=_engine_sidecar,
            batch_profile=True,
            cpu_threads=False,
        ),
        ModelKind(
            "pt2",
            ".pt2",
            pt2_io,
            # rn50 serve runs it (rn50's runner in Triton's Python backend, aoti-cpu); no stock backend does.
            not_served=f"an AOTInductor package: no stock Triton backend runs it ({cmd('serve')} does, with rn50's)",
            sidecar_problem=_pt2_sidecar,
        ),
    )
}


def recorded_suffixes() -> set[str]:
    """The files rn50 records: one of these in a work directory but not in its manifest is reported by verify."""
    return {s for k in KINDS.values() for s in (k.suffix, *(f for _, f in k.companions))}


def served_filenames() -> set[str]:
    """The model files of a Triton repository rn50 writes (each a copy of an artifact, named for its backend)."""
    return {p.filename for k in KINDS.values() for ps in k.served.values() for p in ps}

"""An AOTInductor package (``.pt2``, ``rn50 export --pt2``, ``rn50 quantize --int8 --pt2``) run by
``torch._inductor.aoti_load_package``: PyTorch's ahead-of-time path, no Python model code and no compile at run time.
A package compiled by another torch or for another CPU instruction set is refused before it is loaded
(``rn50.runtimes.pt2_package.check_sidecar``). And an INT8 package's quantized program, run as written by PyTorch
(``ProgramRunner``): what the package says it computes."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from rn50.errors import UsageError
from rn50.runtimes.base import Feed, Runner, TensorSpec
from rn50.runtimes.torch_runner import TorchThreads
from rn50.words import opt

if TYPE_CHECKING:
    from pathlib import Path


class _PyTorchFileRunner(Runner):
    """What the runners of PyTorch's files share: the file, PyTorch's CPU threads while active, the image input."""

    def __init__(self, path: Path, *, threads: int | None, label: str):
        super().__init__(label=label)
        self.path = path
        self._threads = TorchThreads(threads)

    def deactivate(self) -> None:
        self._threads.give_back()

    def input_specs(self) -> list[TensorSpec]:
        return [TensorSpec("input", "float32", ("batch", 3, 224, 224))]


class AotiRunner(_PyTorchFileRunner):
    backend = "aoti"

    def __init__(self, path: Path, *, threads: int | None = None, label: str = "aoti-cpu"):
        from rn50.runtimes.pt2_package import check_sidecar

        self.sidecar = check_sidecar(path)  # before anything is loaded
        super().__init__(path, threads=threads, label=label)
        self._package: Any = None
        self._static: dict[int, Any] = {}

    def activate(self) -> None:
        from torch._inductor.package import load_package

        from rn50.runtimes.pt2_package import DYNAMIC_MODEL, static_model

        self._threads.take()
        if self._package is None:
            self._package = load_package(str(self.path), DYNAMIC_MODEL)
            # the batch sizes compiled apart too (faster than the dynamic code at batch 1)
            self._static = {b: load_package(str(self.path), static_model(b)) for b in self.sidecar.static_batches}

    @property
    def device(self) -> str:
        return f"cpu ({self.sidecar.isa or 'no vector ISA'})"

    def _infer(self, feed: Feed) -> Feed:
        x = feed["input"]
        if len(x) > self.sidecar.max_batch:
            raise UsageError(
                f"batch {len(x)} is above {self.path.name}'s largest batch ({self.sidecar.max_batch})",
                fix=f"use {opt('batch')} {self.sidecar.max_batch} or less",
            )
        run = self._static.get(len(x), self._package)
        with torch.inference_mode():
            y = run(torch.from_numpy(np.ascontiguousarray(x)))
        return {"logits": y.float().numpy().astype(np.float32, copy=False)}


class ProgramRunner(_PyTorchFileRunner):
    """A PT2E-quantized program (``torch.export.load``) run eagerly: its quantize/dequantize operators and float ones
    as written, in float arithmetic — the INT8 package's own semantics, the same on every CPU up to float rounding."""

    backend = "torch.export"

    def __init__(self, path: Path, *, threads: int | None = None, label: str = "pt2 program"):
        from rn50.runtimes.pt2_package import import_torchao

        import_torchao()  # registers the quantize/dequantize operators the program is written in
        super().__init__(path, threads=threads, label=label)
        self._module: Any = None

    def activate(self) -> None:
        self._threads.take()
        if self._module is None:
            self._module = torch.export.load(str(self.path)).module()

    @property
    def device(self) -> str:
        return "cpu"

    def _infer(self, feed: Feed) -> Feed:
        with torch.no_grad():
            y = self._module(torch.from_numpy(np.ascontiguousarray(feed["input"])))
        return {"logits": y.float().numpy().astype(np.float32, copy=False)}

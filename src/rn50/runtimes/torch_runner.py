"""The reference: the PyTorch model in FP32, on the CPU or on CUDA with TF32 off."""

from __future__ import annotations

import numpy as np
import torch

from rn50.errors import EnvironmentProblem
from rn50.runtimes.base import DeviceBench, Feed, Runner, TensorSpec
from rn50.runtimes.device import TorchCuda
from rn50.words import opt


class TorchThreads:
    """PyTorch's CPU threads set to ``threads`` while a runner is active (every CPU runtime takes --threads), the
    process's own count restored when it is not; None: left as it is."""

    def __init__(self, threads: int | None):
        self.threads = threads
        self._before = 0

    def take(self) -> None:
        if self.threads:
            self._before = torch.get_num_threads()
            torch.set_num_threads(self.threads)

    def give_back(self) -> None:
        if self.threads:
            torch.set_num_threads(self._before)


class TorchRunner(Runner):
    backend = "torch"

    def __init__(
        self, model: torch.nn.Module, *, device: str = "cpu", label: str = "torch-fp32", threads: int | None = None
    ):
        """``threads``: PyTorch's CPU threads while the runner is active (as every CPU runtime takes --threads);
        the process's own count is restored when it ends."""
        super().__init__(label=label)
        self.model = model
        self._device = device
        self._threads = TorchThreads(threads if not device.startswith("cuda") else None)

    def deactivate(self) -> None:
        self._threads.give_back()

    def activate(self) -> None:
        self._threads.take()
        if self._device.startswith("cuda"):
            if not torch.cuda.is_available():
                raise EnvironmentProblem("torch cannot see a CUDA GPU", fix=f"run the reference on {opt('device')} cpu")
            # The reference must be plain FP32: TF32 matmuls/convs would hide real errors.
            torch.backends.cuda.matmul.allow_tf32 = False
            torch.backends.cudnn.allow_tf32 = False
        self.model.eval().to(self._device)

    def input_specs(self) -> list[TensorSpec]:
        return [TensorSpec("input", "float32", ("batch", 3, 224, 224))]

    @property
    def device(self) -> str:
        if self._device.startswith("cuda"):
            return f"{self._device} ({torch.cuda.get_device_name(torch.device(self._device))})"
        return "cpu"

    def device_bench(self, feed: Feed, *, cuda_graph: bool) -> DeviceBench | None:
        if not self._device.startswith("cuda"):
            return None
        if cuda_graph:
            raise EnvironmentProblem(
                "CUDA graphs are not measured for eager PyTorch",
                fix=f"compare torch.compile(mode='reduce-overhead') by hand, or pass {opt('cuda_graphs', False)}",
            )
        stream = torch.cuda.Stream(device=self._device)
        x = torch.from_numpy(feed["input"]).to(self._device)
        model = self.model

        def enqueue() -> None:
            with torch.inference_mode(), torch.cuda.stream(stream):
                model(x)

        return DeviceBench(enqueue, stream, False, TorchCuda())

    def _infer(self, feed: Feed) -> Feed:
        with torch.inference_mode():
            x = torch.from_numpy(feed["input"]).to(self._device)
            y = self.model(x)
        return {"logits": y.float().cpu().numpy().astype(np.float32, copy=False)}


class TorchCompileRunner(TorchRunner):
    """The model through ``torch.compile`` (TorchInductor), FP32, with Inductor's freezing on (weights folded into
    the compiled graph as constants: the inference setting PyTorch's CPU benchmarks use). Each batch size is
    compiled at its first run (``dynamic=False``: one specialised graph per shape), so a first run costs its
    compile; profile's warm-up absorbs it. torch.compile is PyTorch's own deployment path in process; rn50 judges it
    against eager PyTorch like any runtime."""

    backend = "torch.compile"
    freezing = True

    def activate(self) -> None:
        super().activate()
        self._compiled = torch.compile(self.model, dynamic=False)

    def _infer(self, feed: Feed) -> Feed:
        from torch._inductor import config as inductor_config

        with torch.inference_mode(), inductor_config.patch(freezing=self.freezing):
            x = torch.from_numpy(feed["input"]).to(self._device)
            y = self._compiled(x)
        return {"logits": y.float().cpu().numpy().astype(np.float32, copy=False)}


class TorchCompileDefaultRunner(TorchCompileRunner):
    """``torch.compile`` as a user first calls it: Inductor's defaults, no freezing (the weights stay parameters the
    compiled code reads), so that freezing's share of the speed can be read beside ``TorchCompileRunner``'s."""

    freezing = False

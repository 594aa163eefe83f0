"""``rn50 info``: the paper's stage table of ResNet-DEPTH, measured from the built model."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from rn50.commands.flags import flag
from rn50.commands.options import depth_flag
from rn50.commands.outcome import QUIET, Ui
from rn50.errors import UsageError
from rn50.machine import check_batch_memory
from rn50.reports.render import Section

if TYPE_CHECKING:
    from rn50.artifacts import WorkDir
    from rn50.errors import Rn50Error
    from rn50.summary import ModelSummary

MIN_IMAGE_SIZE = 32


@dataclass(frozen=True)
class InfoOptions:
    depth: int = depth_flag()
    image_size: int = flag("--image-size", default=224, help="Input height and width.")

    def check(self) -> None:
        if self.image_size < MIN_IMAGE_SIZE:
            raise UsageError(
                f"--image-size {self.image_size} is too small", fix=f"pass {MIN_IMAGE_SIZE} or more (224 is standard)"
            )
        check_batch_memory(1, self.image_size, flag="--image-size")  # one forward pass at that size


def human(n: float) -> str:
    for unit, size in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(n) >= size:
            return f"{n / size:.2f}{unit}"
    return str(n)


@dataclass(frozen=True)
class InfoOutcome:
    summary: ModelSummary
    error: Rn50Error | None = None

    def sections(self) -> list[Section]:
        s = self.summary
        rows = [
            [r.name, "×".join(map(str, r.output_size)), str(r.blocks), str(r.channels), f"{r.params:,}", human(r.macs)]
            for r in s.stages
        ]
        rows.append(["total", "", "", "", f"{s.params:,}", human(s.macs)])
        return [
            Section(
                f"ResNet-{s.depth} at {s.image_size}×{s.image_size}",
                header=["stage", "output size", "blocks", "channels", "params", "MACs"],
                rows=rows,
                after=[
                    "input: float32 'input' (batch, 3, H, W), RGB, ImageNet mean/std · output: float32 'logits' "
                    "(batch, classes)"
                ],
            )
        ]

    def to_dict(self) -> dict[str, Any]:
        s = self.summary
        return {"depth": s.depth, "image_size": s.image_size, "params": s.params, "macs": s.macs, "stages": s.stages}


def info(options: InfoOptions, _workdir: WorkDir | None = None, _ui: Ui = QUIET) -> InfoOutcome:
    """The stage table of ResNet-DEPTH, measured from the built model: sizes, parameters, MACs."""
    from rn50.model import resnet
    from rn50.summary import summarize

    return InfoOutcome(summarize(resnet(options.depth), image_size=options.image_size))

"""What an export is asked for, and the checks made before any work (no heavy imports)."""

from __future__ import annotations

from dataclasses import dataclass

from rn50.errors import UsageError
from rn50.words import opt

DEFAULT_OPSET = 18
SUPPORTED_OPSETS = range(17, 22)
DEPTHS = (18, 34, 50, 101, 152)


DEFAULT_DEPTH = 50


@dataclass(frozen=True)
class ExportConfig:
    """What an export is asked for (its flags are the command layer's: rn50.commands.options)."""

    depth: int = DEFAULT_DEPTH
    weights: str = "seeded"  # or a checkpoint file
    opset: int = DEFAULT_OPSET
    simplify: bool = True  # onnxsim: BatchNorm folded into the convolutions
    head: str = "auto"  # what the output is: classifier, embedding, or auto (rn50.metrics.resolve_head)


def check_opset(opset: int) -> None:
    if opset not in SUPPORTED_OPSETS:
        raise UsageError(
            f"unsupported opset {opset}",
            fix=f"pass {opt('opset')} between {SUPPORTED_OPSETS.start} and {SUPPORTED_OPSETS.stop - 1} (default "
            f"{DEFAULT_OPSET})",
        )

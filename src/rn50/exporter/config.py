"""What an export is asked for, and the checks made before any work (no heavy imports)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from rn50.errors import UsageError
from rn50.flags import flag

DEFAULT_OPSET = 18
SUPPORTED_OPSETS = range(17, 22)
DEPTHS = (18, 34, 50, 101, 152)


def depth_flag() -> Any:
    """--depth, for every options object that builds the model (export, the pipeline, info)."""
    return flag("--depth", default=50, help=f"ResNet depth: {', '.join(map(str, DEPTHS))}.")


@dataclass(frozen=True)
class ExportConfig:
    depth: int = depth_flag()
    weights: str = flag(
        "--weights",
        default="seeded",
        help="'seeded' (deterministic demo weights) or a torchvision-style checkpoint file.",
    )
    opset: int = flag(
        "--opset", default=DEFAULT_OPSET, help=f"ONNX opset, {SUPPORTED_OPSETS.start} to {SUPPORTED_OPSETS.stop - 1}."
    )
    simplify: bool = flag(
        "--simplify/--no-simplify", default=True, help="Run onnxsim (BatchNorm folded into the convolutions)."
    )
    head: str = flag(
        "--head",
        default="auto",
        help="What the output is: classifier (judged with top-1/top-5 too), embedding (cosine and error only), or "
        "auto (1000 outputs: ImageNet's classifier; any other width: an embedding).",
    )


def check_opset(opset: int) -> None:
    if opset not in SUPPORTED_OPSETS:
        raise UsageError(
            f"unsupported opset {opset}",
            fix=f"pass --opset between {SUPPORTED_OPSETS.start} and {SUPPORTED_OPSETS.stop - 1} (default "
            f"{DEFAULT_OPSET})",
        )

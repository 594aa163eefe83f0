"""What an export is asked for, and the checks made before any work (no heavy imports)."""

from __future__ import annotations

from dataclasses import dataclass

from rn50.errors import UsageError

DEFAULT_OPSET = 18
SUPPORTED_OPSETS = range(17, 22)


@dataclass(frozen=True)
class ExportConfig:
    depth: int = 50
    weights: str = "seeded"
    opset: int = DEFAULT_OPSET
    simplify: bool = True


def check_opset(opset: int) -> None:
    if opset not in SUPPORTED_OPSETS:
        raise UsageError(
            f"unsupported opset {opset}",
            fix=f"pass --opset between {SUPPORTED_OPSETS.start} and {SUPPORTED_OPSETS.stop - 1} (default {DEFAULT_OPSET})",
        )

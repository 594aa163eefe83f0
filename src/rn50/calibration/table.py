"""The calibration table: tensor → range, with what made it; cached content-addressed in the work dir.

The key covers the ONNX sha256, the image-set fingerprint, the method and its options, so a changed
model, set or method never reuses a stale table.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rn50.artifacts import Artifact, atomic_write_text, sha256_file, versions
from rn50.errors import UsageError, uninterrupted
from rn50.words import cmd

if TYPE_CHECKING:
    from collections.abc import Callable

    from rn50.artifacts import WorkDir
    from rn50.feeds import FeedSet

log = logging.getLogger(__name__)
SCHEMA = "rn50.calibration/1"


def table_key(onnx_sha256: str, set_fingerprint: str, method: str, options: dict[str, Any]) -> str:
    text = json.dumps([onnx_sha256, set_fingerprint, method, options], sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()


def _digest(ranges: dict[str, tuple[float, float]]) -> str:
    return hashlib.sha256(json.dumps({k: list(v) for k, v in ranges.items()}, sort_keys=True).encode()).hexdigest()


@dataclass(frozen=True)
class CalibrationTable:
    ranges: dict[str, tuple[float, float]]
    method: str
    options: dict[str, Any]
    onnx_sha256: str
    set_fingerprint: str
    set_description: str
    images: int
    versions: dict[str, Any] = field(default_factory=versions)
    created: float = field(default_factory=time.time)

    @property
    def key(self) -> str:
        return table_key(self.onnx_sha256, self.set_fingerprint, self.method, self.options)

    def amax(self, tensor: str) -> float:
        lo, hi = self.ranges[tensor]
        return max(abs(lo), abs(hi))

    def check_model(self, onnx_sha256: str) -> None:
        if onnx_sha256 != self.onnx_sha256:
            raise UsageError(
                f"the calibration table was made for another model (ONNX sha256 {self.onnx_sha256[:12]}, not "
                f"{onnx_sha256[:12]})",
                fix=f"run {cmd('calibrate')} on this model",
            )

    def save(self, path: Path) -> None:
        data = asdict(self) | {"schema": SCHEMA, "key": self.key, "ranges_sha256": _digest(self.ranges)}
        atomic_write_text(path, json.dumps(data, indent=1, sort_keys=True) + "\n")

    @classmethod
    def load(cls, path: Path) -> CalibrationTable:
        try:
            data = json.loads(Path(path).read_text())
        except (OSError, ValueError) as e:
            raise UsageError(f"cannot read calibration table {path} ({e})", fix=f"run {cmd('calibrate')} again") from e
        if not isinstance(data, dict) or data.get("schema") != SCHEMA:
            raise UsageError(f"{path} is not an rn50 calibration table", fix=f"run {cmd('calibrate')} to make one")
        data.pop("schema")
        key = data.pop("key", None)
        digest = data.pop("ranges_sha256", None)
        data["ranges"] = {k: (float(v[0]), float(v[1])) for k, v in data["ranges"].items()}
        table = cls(**data)
        if key != table.key or digest != _digest(table.ranges):
            raise UsageError(
                f"{path} was edited: its key does not match its contents", fix=f"run {cmd('calibrate')} again"
            )
        return table


@dataclass(frozen=True)
class CalibrationResult:
    table: CalibrationTable
    path: Path
    reused: bool


def table_for(
    workdir: WorkDir,
    feeds: FeedSet,
    *,
    method: str,
    percentile: float | None = None,
    batch: int = 16,
    progress: Callable[[int], None] | None = None,
    reuse: bool = True,
) -> CalibrationResult:
    """Collect ranges, or (``reuse``) the table cached under the same key (model, set, method, options)."""
    from rn50.calibration.ranges import collect_ranges, method_options
    from rn50.exporter.onnx_file import fp32_artifact

    options = method_options(method, percentile=percentile)
    fp32, path = fp32_artifact(workdir)
    key = table_key(fp32.sha256, feeds.fingerprint, method, options)
    target = workdir.path(f"calibration/{method}-{key[:16]}.json")
    if reuse and target.is_file():
        table = CalibrationTable.load(target)
        if table.key == key:
            log.info("reusing calibration table %s", target)
            return CalibrationResult(table, target, True)
    ranges = collect_ranges(path, feeds, method, options, batch=batch, progress=progress)
    table = CalibrationTable(ranges, method, options, fp32.sha256, feeds.fingerprint, feeds.description, len(feeds))
    target.parent.mkdir(exist_ok=True)
    with uninterrupted():  # the table and its manifest entry land together
        table.save(target)
        workdir.record(
            Artifact(
                f"calibration-{method}",
                str(target.relative_to(workdir.root)),
                "calibration-table",
                "int8",
                sha256_file(target),
                fp32.sha256,
                {
                    "method": method,
                    "options": options,
                    "images": len(feeds),
                    "set": feeds.description,
                    "set_fingerprint": feeds.fingerprint,
                },
                versions(),
            )
        )
    return CalibrationResult(table, target, False)

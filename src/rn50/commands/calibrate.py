"""``rn50 calibrate``: the calibration table of the work directory's FP32 model on the given images (the one cached
under the same model, images, method and options, or a new one; the work itself is in ``rn50.calibration``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from rn50.commands.options import CALIBRATION_COUNT, CalibrationOptions, FeedOptions
from rn50.commands.outcome import QUIET, Ui
from rn50.reports.render import Section

if TYPE_CHECKING:
    from rn50.artifacts import WorkDir
    from rn50.calibration.table import CalibrationResult
    from rn50.errors import Rn50Error
    from rn50.feeds import FeedSet


@dataclass(frozen=True)
class CalibrateOptions:
    feeds: FeedOptions = field(default_factory=lambda: FeedOptions(count=CALIBRATION_COUNT))
    calibration: CalibrationOptions = field(default_factory=CalibrationOptions)

    def check(self, *, auto: bool = False) -> None:
        """``auto``: --method auto is allowed (rn50 quantize compares the methods)."""
        self.calibration.check(auto=auto)  # bad options fail before images are read
        self.feeds.check()


@dataclass(frozen=True)
class CalibrateOutcome:
    result: CalibrationResult
    error: Rn50Error | None = None

    def sections(self) -> list[Section]:
        r, t = self.result, self.result.table
        verb = "reused" if r.reused else "wrote"
        return [
            Section(
                "",
                paragraphs=[
                    f"{verb} {r.path}: {len(t.ranges)} tensor ranges, {t.method} {t.options}, {t.images} images "
                    f"({t.set_description})"
                ],
            )
        ]

    def to_dict(self) -> dict[str, Any]:
        r, t = self.result, self.result.table
        return {
            "path": r.path,
            "reused": r.reused,
            "key": t.key,
            "method": t.method,
            "options": t.options,
            "images": t.images,
            "tensors": len(t.ranges),
        }


def read_feeds(options: CalibrateOptions, ui: Ui = QUIET) -> FeedSet:
    """The calibration images (their warnings logged)."""
    import logging

    ui.status("reading the calibration images…")
    feeds = options.feeds.read(split="calibration", status=ui.status)
    for warning in feeds.warnings:
        logging.getLogger(__name__).warning("%s", warning)
    return feeds


def calibrate(
    options: CalibrateOptions, workdir: WorkDir, ui: Ui = QUIET, *, feeds: FeedSet | None = None, reuse: bool = True
) -> CalibrateOutcome:
    """Collect activation ranges (or reuse the cached table for the same model, images and method)."""
    from rn50.calibration.table import table_for
    from rn50.exporter.onnx_file import fp32_artifact

    fp32_artifact(workdir)  # the model first: no image is read for a directory that has none
    feeds = feeds or read_feeds(options, ui)
    c = options.calibration
    advance = ui.bar(f"calibrating ({c.method})", len(feeds))
    result = table_for(
        workdir, feeds, method=c.method, percentile=c.percentile, batch=c.batch, progress=advance, reuse=reuse
    )
    return CalibrateOutcome(result)

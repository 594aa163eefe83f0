"""loadtest.json / loadtest.md / loadtest.png, and the load test's section of report.md and report.html.
Sections are rendered from the typed result (the work-directory report reads loadtest.json back into it)."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from rn50.artifacts import atomic_write_bytes, atomic_write_text
from rn50.charts import png, pyplot
from rn50.metrics import fmt
from rn50.reports.render import Section, machine_line, to_markdown
from rn50.results.loadtest_results import REPORT, to_dict

if TYPE_CHECKING:
    from pathlib import Path

    from rn50.metrics import Thresholds
    from rn50.results.loadtest_results import LoadtestReport
    from rn50.runtimes.timing import LatencyStats

CHART = "loadtest.png"


def formed(batches: dict[Any, int]) -> str:
    """Triton's executions by batch size, as size×count."""
    return ", ".join(f"{b}×{n}" for b, n in batches.items()) or "—"


def _ms(stats: LatencyStats | None, key: str) -> str:
    return f"{getattr(stats, key):.2f}" if stats else "—"


def sections(report: LoadtestReport, *, image: str | None = None) -> list[Section]:
    model = report.model
    head = Section("Load test on Triton Inference Server", "loadtest")
    head.paragraphs.append(f"**{report.verdict_line()}.**")
    head.paragraphs.append(
        f"Model `{model.name}` ({model.artifact or 'not written by rn50'}) at {report.url} over "
        f"{report.protocol}, "
        f"max batch {model.max_batch_size}; answers judged as {report.precision} against PyTorch FP32 on "
        f"{report.feeds} "
        f"(every answer: {_per_answer(report.thresholds)}; all answers together: {_aggregate(report.thresholds)}). "
        f"Each client sends one image per request, back to back, for {report.phase} per level."
    )
    head.header = [
        "clients",
        "answered",
        "img/s",
        "median ms",
        "p90 ms",
        "p95 ms",
        "p99 ms",
        "batches Triton formed",
        "wrong",
        "failed",
    ]
    for lv in report.levels:
        mean = f" (mean {lv.formed_batch:.2f})" if lv.formed_batch else ""
        head.rows.append(
            [
                str(lv.concurrency),
                str(lv.requests),
                f"{lv.throughput:.1f}",
                _ms(lv.latency, "median_ms"),
                _ms(lv.latency, "p90_ms"),
                _ms(lv.latency, "p95_ms"),
                _ms(lv.latency, "p99_ms"),
                formed(lv.batches) + mean,
                str(lv.wrong),
                str(lv.errors),
            ]
        )
    head.after.append(
        "Latency is the client's: request sent to answer decoded (queueing in Triton's batcher included). "
        "Batches are Triton's executions by batch size, from its statistics, as size×count."
    )
    overall = report.overall
    if overall:
        head.after.append(
            f"All answers against the reference: worst cosine {overall.cosine_min:.6f}, mean "
            f"{overall.cosine_mean:.6f}, "
            f"max abs {overall.max_abs:.3g}, top-1 agreement {fmt(overall.top1_agreement, '.3f')}."
        )
    for lv in report.levels:
        head.bullets += [f"{lv.concurrency} client(s), wrong: {w}" for w in lv.wrong_examples]
        head.bullets += [f"{lv.concurrency} client(s), failed: {e}" for e in lv.error_examples]
    if image:
        head.images.append(("throughput and p99 latency by concurrency", image))
    head.after.append(machine_line(report.machine))
    return [head]


def _per_answer(t: Thresholds) -> str:
    parts = [f"cosine ≥ {t.min_cosine}"] if t.min_cosine is not None else []
    parts += [f"max abs ≤ {t.max_abs}"] if t.max_abs is not None else []
    return ", ".join(parts) or "no bound"


def _aggregate(t: Thresholds) -> str:
    parts = [f"mean cosine ≥ {t.min_cosine_mean}"] if t.min_cosine_mean is not None else []
    parts += [f"top-1 agreement ≥ {t.min_top1}"] if t.min_top1 is not None else []
    return ", ".join(parts) or "no bound"


def chart(report: LoadtestReport) -> bytes | None:
    plt = pyplot("load-test chart")
    levels = [lv for lv in report.levels if lv.latency]
    if plt is None or not levels:
        return None
    labels = [str(lv.concurrency) for lv in levels]
    fig, (left, right) = plt.subplots(1, 2, figsize=(7.5, 3.0))
    left.bar(labels, [lv.throughput for lv in levels], color="tab:blue")
    left.set_title("throughput (img/s)")
    right.bar(labels, [lv.latency.median_ms for lv in levels if lv.latency], color="tab:gray", label="median")
    right.plot(labels, [lv.latency.p99_ms for lv in levels if lv.latency], "s", color="tab:red", label="p99")
    right.set_title("client latency (ms)")
    right.legend(loc="upper left", fontsize=8)
    for ax in (left, right):
        ax.set_xlabel("concurrent clients")
    fig.suptitle(f"{report.model.name} on Triton Inference Server", fontsize=10)
    return png(fig, dpi=110)


def write(report: LoadtestReport, folder: Path) -> list[Path]:
    data = to_dict(report)
    written = [folder / REPORT, folder / "loadtest.md"]
    image = chart(report)
    if image is not None:
        atomic_write_bytes(folder / CHART, image)
        written.append(folder / CHART)
    atomic_write_text(written[0], json.dumps(data, indent=2) + "\n")
    atomic_write_text(
        written[1], to_markdown("rn50 load test", sections(report, image=CHART if image is not None else None))
    )
    return written

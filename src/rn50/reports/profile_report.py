"""profile.json (loadable), profile.md and profile.png: latency per runtime and batch, and speed against
error where a parity.json from the same work directory says how far each artifact is from PyTorch."""

from __future__ import annotations

import json
import logging
from typing import TYPE_CHECKING, Any

from rn50.artifacts import atomic_write_bytes, atomic_write_text
from rn50.charts import png, pyplot
from rn50.errors import UsageError
from rn50.reports.render import Section, machine_line, to_markdown
from rn50.results import parity_results
from rn50.results.profile_results import HOST, METRIC_NAME, REPORT, ProfileReport, Row, to_dict
from rn50.runtimes.registry import double_notes, from_test_double, spec
from rn50.runtimes.timing import HIGH_CV
from rn50.words import cmd, opt

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path

log = logging.getLogger(__name__)
Verdicts = dict[tuple[str, str], dict[str, Any]]  # (runtime, artifact) → parity status, cosine_min, max_abs


def verdicts_of(parity: Any) -> Verdicts:
    """(runtime, artifact) → {status, cosine_min, max_abs} for each result of a ParityReport that ran."""
    if parity is None:
        return {}
    return {
        (r.runtime, r.artifact): {"status": r.status, "cosine_min": r.metrics.cosine_min, "max_abs": r.metrics.max_abs}
        for r in parity.results
        if r.metrics is not None
    }


def parity_verdicts(path: Path) -> Verdicts:
    """``verdicts_of`` a parity.json; empty when absent or unreadable."""
    if not path.is_file():
        return {}
    try:
        return verdicts_of(parity_results.load(path))
    except UsageError as e:
        log.warning("ignoring %s: %s", path, e.message)
        return {}


def acceptable(row: Row, verdicts: Verdicts) -> bool | None:
    """True if parity passed (PyTorch itself is the reference), False if it failed, None if unknown."""
    if spec(row.runtime).reference:
        return True
    v = verdicts.get((row.runtime, row.artifact))
    return None if v is None else v["status"] == "pass"


def parity_mark(row: Row, verdicts: Verdicts) -> str:
    """How a profile row stands on parity: reference (PyTorch itself), pass, fail, or – (not compared)."""
    if spec(row.runtime).reference:
        return "reference"
    ok = acceptable(row, verdicts)
    return "–" if ok is None else "pass" if ok else "fail"


def fastest(
    report: ProfileReport, verdicts: Verdicts, batch: int, where: Callable[[Row], bool] | None = None
) -> Row | None:
    """The fastest end-to-end row at ``batch`` among those whose parity passed (never a stand-in's), and that
    ``where`` accepts when it is given."""
    rows = [
        r
        for r in report.measured
        if r.batch == batch
        and r.mode == HOST
        and not from_test_double(r.runtime)
        and acceptable(r, verdicts)
        and (where is None or where(r))
    ]
    return min(rows, key=lambda r: r.stats.median_ms if r.stats else float("inf"), default=None)


def fastest_lines(report: ProfileReport, verdicts: Verdicts) -> list[str]:
    """Per batch, the fastest end-to-end row whose parity passed: the one wording every report uses."""
    lines = []
    for b in sorted({r.batch for r in report.measured if r.batch is not None}):
        best = fastest(report, verdicts, b)
        if best is not None and best.stats is not None:
            lines.append(
                f"batch {b}: **{best.label}** ({best.precision}), {best.stats.median_ms:.3f} ms median, "
                f"{best.stats.throughput:.1f} img/s"
            )
    return lines


def settings_line(report: ProfileReport) -> str:
    s = report.settings
    return (
        f"Warm-up {s.warmup_s} s and at least {s.warmup_iterations} iterations, then {s.phase} per row; "
        f"{s.threads} CPU threads; CUDA graphs {'on' if s.cuda_graphs else 'off'}. "
        "Latency is end to end from host memory (host clock); GPU Compute Time has inputs and outputs on the device "
        "(CUDA events)."
    )


def sections(
    report: ProfileReport, verdicts: Verdicts | None = None, *, image: str | None = None, full: bool = True
) -> list[Section]:
    """profile.md's sections, also the speed part of report.md/html (``image``: the chart's file name); ``full``
    False leaves out the latency statistics table (what a terminal shows)."""
    verdicts = verdicts or {}
    main = Section(
        "Speed",
        "speed",
        paragraphs=[settings_line(report)],
        notes=[f"note: {n}" for n in double_notes(r.runtime for r in report.rows)],
        header=["runtime · artifact", "precision", "batch", "metric", "median ms", "p99 ms", "CV", "img/s", "parity"],
    )
    stats = Section(
        "Latency statistics",
        "latency-statistics",
        header=[
            "runtime · artifact",
            "batch",
            "metric",
            "min",
            "mean",
            "median",
            "p90",
            "p95",
            "p99",
            "max",
            "std",
            "H2D ms",
            "D2H ms",
        ],
    )
    for r in report.measured:
        st = r.stats
        if st is None:
            continue
        copies = [f"{x:.3f}" if x is not None else "–" for x in (r.h2d_ms, r.d2h_ms)]
        main.rows.append(
            [
                r.label,
                r.precision,
                str(r.batch),
                r.metric,
                f"{st.median_ms:.3f}",
                f"{st.p99_ms:.3f}",
                f"{st.cv:.1%}" + (" ⚠" if st.unstable else ""),
                f"{st.throughput:.1f}",
                parity_mark(r, verdicts),
            ]
        )
        stats.rows.append(
            [
                r.label,
                str(r.batch),
                r.metric,
                *(
                    f"{v:.3f}"
                    for v in (
                        st.min_ms,
                        st.mean_ms,
                        st.median_ms,
                        st.p90_ms,
                        st.p95_ms,
                        st.p99_ms,
                        st.max_ms,
                        st.std_ms,
                    )
                ),
                *copies,
            ]
        )
    if report.unstable:
        main.after.append(
            f"> warning: {len(report.unstable)} row(s) vary by more than {HIGH_CV:.0%} (coefficient of variation, ⚠): "
            f"another process may be competing for the machine; re-run with a longer {opt('duration')} on a quiet "
            "machine."
        )
    if image:
        main.images.append(("latency per runtime and batch; speed against error", image))
    parts = [main]
    ran_on = {r.runtime: r.device for r in report.measured if r.device}
    if ran_on:
        parts.append(Section("Where each runtime ran", "devices", bullets=[f"{k}: {v}" for k, v in ran_on.items()]))
    not_run = [r for r in report.rows if r.stats is None]
    if not_run:
        grouped: dict[tuple[str, str], list[str]] = {}  # (status, reason) → the rows: one line a reason
        for r in not_run:
            row = r.label + (f" (batch {r.batch}, {METRIC_NAME[r.mode]})" if r.batch else "")
            grouped.setdefault((r.status, str(r.reason)), []).append(row)
        parts.append(
            Section(
                "Not measured",
                "not-measured",
                bullets=[f"{status}: {reason}: {', '.join(rows)}" for (status, reason), rows in grouped.items()],
            )
        )
    best = fastest_lines(report, verdicts) if verdicts else []
    if best:
        parts.append(Section("Fastest at acceptable error (parity passed), end to end", "fastest", bullets=best))
    return parts if not full else [*parts, stats]


def markdown(report: ProfileReport, verdicts: Verdicts | None = None, *, image: str | None = None) -> str:
    return to_markdown(
        str(cmd("profile")),
        [*sections(report, verdicts, image=image), Section("", after=[machine_line(report.machine)])],
    )


def chart(report: ProfileReport, verdicts: Verdicts | None = None) -> bytes | None:
    """Median latency per runtime and batch (bars); beside it, latency against error where parity is known."""
    rows = report.measured
    if not rows:
        return None
    plt = pyplot("profile chart")
    if plt is None:
        return None
    verdicts = verdicts or {}
    scatter = [r for r in rows if r.mode == HOST and (r.runtime, r.artifact) in verdicts]
    batches = sorted({r.batch for r in rows if r.batch is not None})
    series = sorted({(r.label, r.mode) for r in rows})
    fig, axes = plt.subplots(
        1, 2 if scatter else 1, figsize=(14 if scatter else 9, 0.45 * len(series) * len(batches) + 2.2), squeeze=False
    )
    ax: Any = axes[0][0]
    height = 0.8 / len(batches)
    for i, b in enumerate(batches):
        values = []
        for label, mode in series:
            match = [r for r in rows if r.label == label and r.mode == mode and r.batch == b]
            values.append(match[0].stats.median_ms if match and match[0].stats else 0.0)
        ax.barh([y + i * height for y in range(len(series))], values, height=height, label=f"batch {b}")
    ax.set_yticks(
        [y + 0.4 - height / 2 for y in range(len(series))],
        [label if mode == HOST else f"{label} [{METRIC_NAME[mode]}]" for label, mode in series],
    )
    ax.set_xscale("log")
    ax.set_xlabel("median latency, ms (log scale)")
    ax.set_title(f"{cmd('profile')} · {report.settings.threads} CPU threads")
    ax.legend()
    if scatter:
        ax2: Any = axes[0][1]
        batch = batches[0]
        for r, st in ((r, r.stats) for r in scatter if r.batch == batch):
            if st is None:
                continue
            v = verdicts[(r.runtime, r.artifact)]
            error = max(1.0 - v["cosine_min"], 1e-9)
            ax2.scatter(
                st.median_ms,
                error,
                marker="o" if v["status"] == "pass" else "x",
                s=60,
                color="tab:green" if v["status"] == "pass" else "tab:red",
            )
            ax2.annotate(r.label, (st.median_ms, error), fontsize=7, xytext=(4, 4), textcoords="offset points")
        ax2.set_xscale("log")
        ax2.set_yscale("log")
        ax2.set_xlabel(f"median latency at batch {batch}, ms (end to end)")
        ax2.set_ylabel("1 − worst-sample cosine vs PyTorch FP32")
        ax2.set_title("speed vs error (o parity passed, x failed): lower left is better")
    return png(fig, dpi=100)


CHART = "profile.png"


def write(report: ProfileReport, folder: Path) -> list[Path]:
    verdicts = parity_verdicts(folder / parity_results.REPORT)
    written = [folder / REPORT, folder / "profile.md"]
    image = chart(report, verdicts)
    if image is not None:
        atomic_write_bytes(folder / CHART, image)
        written.append(folder / CHART)
    atomic_write_text(written[0], json.dumps(to_dict(report), indent=2) + "\n")
    atomic_write_text(written[1], markdown(report, verdicts, image=CHART if image is not None else None))
    return written

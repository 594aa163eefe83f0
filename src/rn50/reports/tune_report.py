"""tune.json / tune.md / tune.png, and rn50 tune's section of report.md and report.html, rendered from the typed
result (the work-directory report reads tune.json back into the same type)."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

from rn50.artifacts import atomic_write_bytes, atomic_write_text
from rn50.charts import png, pyplot
from rn50.reports.render import Section, machine_line, to_markdown
from rn50.results.tune_results import REPORT, to_dict
from rn50.words import cmd

if TYPE_CHECKING:
    from pathlib import Path

    from rn50.results.tune_results import Config, Point, TuneReport

CHART = "tune.png"


def _config(c: Config) -> str:
    return f"{c.instances} × {c.threads} thr, batch ≤ {c.max_batch}, {c.queue_delay_us} µs"


def _num(value: float | None, fmt: str = ".1f") -> str:
    return "—" if value is None else format(value, fmt)


def pareto(points: tuple[Point, ...] | list[Point]) -> list[Point]:
    """The correct points no other correct point beats on both throughput and p99 (the front, by p99)."""
    right = sorted(
        (p for p in points if p.status in ("ok", "over budget") and p.p99_ms is not None),
        key=lambda p: (p.p99_ms or 0.0, -p.throughput),
    )
    front, best = [], -1.0
    for p in right:
        if p.throughput > best:
            front.append(p)
            best = p.throughput
    return front


def sections(report: TuneReport, *, image: str | None = None) -> list[Section]:
    head = Section(f"Serving configuration ({cmd('tune')})", "tune")
    head.paragraphs.append(f"**{report.verdict_line()}.**")
    head.paragraphs.append(
        f"`{report.artifact}` on {report.runtime} ({report.precision}), {report.concurrency} concurrent clients, "
        f"{report.requests} requests per configuration after a warm-up, each on a freshly started Triton server; "
        f"every answer checked against PyTorch FP32 ({report.checked} of {report.answered} "
        f"received); p99 budget {report.budget_ms:g} ms. {len(report.points)} configurations in "
        f"{report.seconds:.0f} s; the search stopped: {report.stopped}."
    )
    front = {id(p) for p in pareto(report.points)}
    best = report.best.config if report.best is not None else None
    head.header = ["configuration", "status", "img/s", "p50 ms", "p90 ms", "p99 ms", "formed batch", "wrong", "failed"]
    for p in sorted(report.points, key=lambda p: -p.throughput):
        marks = [m for m, on in (("best", p.config == best), ("default", p.config == report.default)) if on]
        marks += ["front"] if id(p) in front else []
        head.rows.append(
            [
                _config(p.config) + (f" ({', '.join(marks)})" if marks else ""),
                p.status + (f": {p.reason}" if p.reason and p.status != "over budget" else ""),
                _num(p.throughput),
                _num(p.p50_ms),
                _num(p.p90_ms),
                _num(p.p99_ms),
                _num(p.formed_batch, ".2f"),
                str(p.wrong),
                str(p.errors),
            ]
        )
    head.after.append(
        "thr: CPU threads per instance; front: no other correct configuration is both faster and lower in p99. "
        "A configuration with one wrong answer or one failed request is never chosen. "
        f"Serve the best one with `{cmd('triton-repo', from_tune=True)}` (its config.pbtxt) or the same flags of "
        f"`{cmd('serve')}`."
    )
    if image:
        head.images.append(("throughput against p99 latency, the front and the budget", image))
    return [head]


def chart(report: TuneReport) -> bytes | None:
    plt = pyplot("tune chart")
    if plt is None or not report.points:
        return None
    fig, ax = plt.subplots(figsize=(8, 4.5))
    colours = {"ok": "#1a7f37", "over budget": "#8c959f", "wrong answers": "#cf222e", "failed": "#cf222e"}
    for status, colour in colours.items():
        pts = [p for p in report.points if p.status == status and p.p99_ms is not None]
        if pts:
            ax.scatter([p.p99_ms for p in pts], [p.throughput for p in pts], c=colour, label=status, s=28)
    front = pareto(report.points)
    if front:
        ax.plot([p.p99_ms for p in front], [p.throughput for p in front], "--", c="#0969da", label="front")
    best = report.best
    if best is not None:
        ax.scatter([best.p99_ms], [best.throughput], s=160, facecolors="none", edgecolors="#1a7f37", label="best")
    ax.axvline(report.budget_ms, color="#b3261e", linestyle=":", label=f"p99 budget {report.budget_ms:g} ms")
    ax.set_xlabel(f"p99 latency (ms) at {report.concurrency} clients")
    ax.set_ylabel("images / s")
    ax.set_title(f"{cmd('tune')}: serving configurations on Triton")
    ax.legend(fontsize=8, loc="best")
    fig.tight_layout()
    return png(fig, dpi=110)


def write(report: TuneReport, folder: Path) -> list[Path]:
    data = to_dict(report)
    written = [folder / REPORT, folder / "tune.md"]
    image = chart(report)
    if image is not None:
        atomic_write_bytes(folder / CHART, image)
        written.append(folder / CHART)
    atomic_write_text(written[0], json.dumps(data, indent=2) + "\n")
    parts = [*sections(report, image=CHART if image else None), Section("", after=[machine_line(report.machine)])]
    atomic_write_text(written[1], to_markdown(str(cmd("tune")), parts))
    return written

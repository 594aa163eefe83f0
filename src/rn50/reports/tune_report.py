"""tune.json / tune.md / tune.png, and rn50 tune's section of report.md and report.html. Sections are rendered from
the JSON form, so the work-directory report reads the same thing the command wrote."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from rn50.artifacts import atomic_write_bytes, atomic_write_text
from rn50.charts import png, pyplot
from rn50.reports.render import Section, machine_line, to_markdown
from rn50.results.tune_results import REPORT, to_dict
from rn50.words import cmd

if TYPE_CHECKING:
    from pathlib import Path

    from rn50.results.tune_results import TuneReport

CHART = "tune.png"


def _config(c: dict[str, Any]) -> str:
    return f"{c['instances']} × {c['threads']} thr, batch ≤ {c['max_batch']}, {c['queue_delay_us']} µs"


def _num(value: float | None, fmt: str = ".1f") -> str:
    return "—" if value is None else format(value, fmt)


def pareto(points: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The correct points no other correct point beats on both throughput and p99 (the front, by p99)."""
    right = sorted(
        (p for p in points if p["status"] in ("ok", "over budget") and p["p99_ms"] is not None),
        key=lambda p: (p["p99_ms"], -p["throughput"]),
    )
    front, best = [], -1.0
    for p in right:
        if p["throughput"] > best:
            front.append(p)
            best = p["throughput"]
    return front


def sections(data: dict[str, Any], *, image: str | None = None) -> list[Section]:
    head = Section(f"Serving configuration ({cmd('tune')})", "tune")
    head.paragraphs.append(f"**{data['verdict']}.**")
    head.paragraphs.append(
        f"`{data['artifact']}` on {data['runtime']} ({data['precision']}), {data['concurrency']} concurrent clients, "
        f"{data['requests']} requests per configuration after a warm-up, each on a freshly started Triton server; "
        f"every answer checked against PyTorch FP32 ({data['answers_checked']} of {data['answers_received']} "
        f"received); p99 budget {data['budget_ms']:g} ms. {len(data['points'])} configurations in "
        f"{data['seconds']:.0f} s; the search stopped: {data['stopped']}."
    )
    front = {id(p) for p in pareto(data["points"])}
    best, default = data["best"], data["default"]
    head.header = ["configuration", "status", "img/s", "p50 ms", "p90 ms", "p99 ms", "formed batch", "wrong", "failed"]
    for p in sorted(data["points"], key=lambda p: -p["throughput"]):
        marks = [m for m, on in (("best", p["config"] == best), ("default", p["config"] == default)) if on]
        marks += ["front"] if id(p) in front else []
        head.rows.append(
            [
                _config(p["config"]) + (f" ({', '.join(marks)})" if marks else ""),
                p["status"] + (f": {p['reason']}" if p["reason"] and p["status"] != "over budget" else ""),
                _num(p["throughput"]),
                _num(p["p50_ms"]),
                _num(p["p90_ms"]),
                _num(p["p99_ms"]),
                _num(p["formed_batch"], ".2f"),
                str(p["wrong"]),
                str(p["errors"]),
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


def chart(data: dict[str, Any]) -> bytes | None:
    plt = pyplot("tune chart")
    if plt is None or not data["points"]:
        return None
    fig, ax = plt.subplots(figsize=(8, 4.5))
    colours = {"ok": "#1a7f37", "over budget": "#8c959f", "wrong answers": "#cf222e", "failed": "#cf222e"}
    for status, colour in colours.items():
        pts = [p for p in data["points"] if p["status"] == status and p["p99_ms"] is not None]
        if pts:
            ax.scatter([p["p99_ms"] for p in pts], [p["throughput"] for p in pts], c=colour, label=status, s=28)
    front = pareto(data["points"])
    if front:
        ax.plot([p["p99_ms"] for p in front], [p["throughput"] for p in front], "--", c="#0969da", label="front")
    best = next((p for p in data["points"] if p["config"] == data["best"]), None)
    if best is not None:
        ax.scatter([best["p99_ms"]], [best["throughput"]], s=160, facecolors="none", edgecolors="#1a7f37", label="best")
    ax.axvline(data["budget_ms"], color="#b3261e", linestyle=":", label=f"p99 budget {data['budget_ms']:g} ms")
    ax.set_xlabel(f"p99 latency (ms) at {data['concurrency']} clients")
    ax.set_ylabel("images / s")
    ax.set_title(f"{cmd('tune')}: serving configurations on Triton")
    ax.legend(fontsize=8, loc="best")
    fig.tight_layout()
    return png(fig, dpi=110)


def write(report: TuneReport, folder: Path) -> list[Path]:
    data = json.loads(json.dumps(to_dict(report)))  # the JSON form, as report.md reads it back
    written = [folder / REPORT, folder / "tune.md"]
    image = chart(data)
    if image is not None:
        atomic_write_bytes(folder / CHART, image)
        written.append(folder / CHART)
    atomic_write_text(written[0], json.dumps(data, indent=2) + "\n")
    parts = [*sections(data, image=CHART if image else None), Section("", after=[machine_line(data["machine"])])]
    atomic_write_text(written[1], to_markdown(str(cmd("tune")), parts))
    return written

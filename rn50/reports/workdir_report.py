"""report.md and a self-contained report.html: which artifacts exist, their parity verdicts, their speed,
the machine, and what was skipped and why. Both are rendered from one list of sections."""

from __future__ import annotations

import datetime
import logging
from typing import TYPE_CHECKING, Any

from rn50.artifacts import WorkDir, atomic_write_text, versions
from rn50.errors import UsageError
from rn50.machine import describe
from rn50.reports.render import Section, machine_line, to_html, to_markdown
from rn50.runtimes.registry import standin_note

if TYPE_CHECKING:
    from pathlib import Path

log = logging.getLogger(__name__)


def _when(ts: float) -> str:
    return datetime.datetime.fromtimestamp(ts).strftime("%Y-%m-%d %H:%M")


def _load(workdir: WorkDir, name: str, loader: Any) -> Any:
    path = workdir.path(name)
    if not path.is_file():
        return None
    try:
        return loader(path)
    except UsageError as e:
        log.warning("report: ignoring %s (%s)", path, e.message)
        return None


def sections(workdir: WorkDir, steps: list[Any] | None = None) -> list[Section]:
    """report.md/html: a summary, the artifacts, then parity's and profile's own sections, what was skipped,
    and the machine."""
    from rn50.reports import loadtest_report, parity_report, profile_report, quantize_report
    from rn50.results import loadtest_results, parity_results, profile_results

    parity = _load(workdir, parity_results.REPORT, parity_results.load)
    profile = _load(workdir, profile_results.REPORT, profile_results.load)
    loadtest = _load(workdir, loadtest_results.REPORT, loadtest_results.load)
    verdicts = profile_report.verdicts_of(parity)
    out: list[Section] = []

    summary = Section("Summary", "summary")
    if parity is not None:
        summary.paragraphs.append(f"{parity.verdict_line()} ({_when(parity.created)}).")
    else:
        summary.paragraphs.append("Parity: not run yet.")
    if profile is not None:
        summary.paragraphs += [f"Fastest at acceptable error, {line}." for line in profile_report.fastest_lines(profile, verdicts)]
    if loadtest is not None:
        summary.paragraphs.append(f"{loadtest['verdict']} ({_when(loadtest['created'])}).")
    shown = [r.runtime for r in parity.results] if parity is not None else []
    summary.paragraphs += standin_note(shown + ([r.runtime for r in profile.rows] if profile is not None else []))
    if steps:
        summary.header = ["step", "status", "seconds", "detail"]
        summary.rows = [[s.name, s.status, f"{s.seconds:.1f}", s.detail] for s in steps]
    out.append(summary)

    arts = Section("Artifacts", "artifacts", header=["name", "file", "kind", "precision", "size", "sha256", "made"])
    for a in workdir.artifacts():
        path = workdir.path(a.path)
        size = f"{path.stat().st_size / 2**20:.1f} MiB" if path.is_file() else "missing"
        arts.rows.append([a.name, a.path, a.kind, a.precision, size, a.sha256[:12], _when(a.created)])
    if not arts.rows:
        arts.paragraphs.append("No artifacts yet.")
    out.append(arts)

    if parity is not None:
        image = parity_report.PLOT if workdir.path(parity_report.PLOT).is_file() else None
        out += parity_report.sections(parity, image=image)
    else:
        out.append(Section("Verdicts", "verdicts", paragraphs=["No parity.json in this directory."]))

    if profile is not None:
        image = profile_report.CHART if workdir.path(profile_report.CHART).is_file() else None
        out += profile_report.sections(profile, verdicts, image=image)
    else:
        out.append(Section("Speed", "speed", paragraphs=["No profile.json in this directory."]))

    if loadtest is not None:  # rn50 loadtest against a served model
        image = loadtest_report.CHART if workdir.path(loadtest_report.CHART).is_file() else None
        out += loadtest_report.sections(loadtest, image=image)

    searches = quantize_report.searches_of(_load(workdir, quantize_report.REPORT, quantize_report.load) or [])
    if searches:  # quantize --budget: the ranking and the steps
        image = quantize_report.BUDGET_CHART if workdir.path(quantize_report.BUDGET_CHART).is_file() else None
        out += quantize_report.budget_sections(searches, image=image)

    skipped = Section("Skipped, and why", "skipped", header=["what", "why"])
    for st in steps or []:
        if st.status in ("skipped", "not run", "failed"):
            skipped.rows.append([f"step {st.name} ({st.status})", st.detail])
    if not skipped.rows:
        skipped.paragraphs.append("No step was skipped; runtimes not run are listed with their results above.")
    out.append(skipped)

    machine = (profile.machine if profile is not None else None) or (versions() | describe())
    out.append(Section("Machine", "machine", paragraphs=[machine_line(machine)]))
    return out


def write(workdir: WorkDir, steps: list[Any] | None = None) -> list[Path]:
    parts = sections(workdir, steps)
    title = f"rn50 report — {workdir.root.resolve().name}"
    md, page = workdir.path("report.md"), workdir.path("report.html")
    atomic_write_text(md, to_markdown(title, parts))
    atomic_write_text(page, to_html(title, parts, workdir.root))
    return [md, page]

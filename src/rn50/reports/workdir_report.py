"""report.md and a self-contained report.html: which artifacts exist, their parity verdicts, their speed,
the machine, and what was skipped and why. Both are rendered from one list of sections."""

from __future__ import annotations

import datetime
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rn50.artifacts import WorkDir, atomic_write_text, versions
from rn50.errors import UsageError
from rn50.machine import describe
from rn50.metrics import fmt
from rn50.reports.render import Section, machine_line, to_html, to_markdown
from rn50.runtimes.registry import double_notes, from_test_double
from rn50.words import cmd

if TYPE_CHECKING:
    from rn50.results.pipeline_results import StepResult
    from rn50.results.profile_results import Row

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


def steps_section(steps: list[StepResult], title: str = "") -> Section:
    """The pipeline's steps, one row each: what a terminal shows and report.md's summary holds."""
    return Section(
        title,
        "steps",
        header=["step", "status", "seconds", "detail"],
        rows=[[s.name, s.status, f"{s.seconds:.1f}", s.detail] for s in steps],
    )


def recommendation(parity: Any, profile: Any, workdir: WorkDir | None = None) -> Section:
    """What to ship, first thing in the report: per deployment target measured here (this CPU, with its INT8 class;
    the GPU), the fastest runtime · artifact whose parity passed, its speed and its error against PyTorch, and what
    failed and why — one line each."""
    from rn50.reports.profile_report import fastest, verdicts_of
    from rn50.runtimes.registry import is_gpu, spec

    out = Section("What to ship", "recommendation")
    if parity is None:
        out.paragraphs.append(
            f"No parity yet: run `{cmd('parity')}` (or `{cmd('pipeline')}`) to know which engines can be trusted."
        )
        return out
    verdicts = verdicts_of(parity)
    results = {(r.runtime, r.artifact): r for r in parity.results}
    machine = (profile.machine if profile is not None else None) or describe()
    cpu = machine.get("cpu") or {}
    targets = [("cpu", f"CPU ({cpu.get('model') or 'this machine'}, INT8 class {cpu.get('int8_class', '?')})")]
    targets.append(("gpu", f"GPU ({machine['gpus'][0]['name']})" if machine.get("gpus") else "GPU"))
    for device, name in targets:
        on_device = [
            r for r in parity.results if (is_gpu(r.runtime) == (device == "gpu")) and not from_test_double(r.runtime)
        ]
        ran = [r for r in on_device if r.status in ("pass", "fail")]
        if not ran:
            reasons = sorted({r.reason for r in on_device if r.reason})
            out.bullets.append(f"{name}: nothing ran here" + (f" ({reasons[0]})" if reasons else ""))
            continue

        def here(row: Row, gpu: bool = device == "gpu") -> bool:  # this device's runtimes, not PyTorch itself
            return is_gpu(row.runtime) == gpu and not spec(row.runtime).reference

        best = fastest(profile, verdicts, 1, where=here) if profile is not None else None
        if best is not None and best.stats is not None:
            shipped = results[(best.runtime, best.artifact)]
            m = shipped.metrics
            error = (
                f"cos mean {m.cosine_mean:.4f}, worst {m.cosine_min:.4f}, top-1 {fmt(m.top1_agreement, '.2f')}"
                if m
                else "—"
            )
            out.bullets.append(
                f"{name}: ship **{Path(shipped.path).name}** ({best.artifact}) on **{best.runtime}** "
                f"({best.precision}) — "
                f"{best.stats.median_ms:.2f} ms at batch 1, {best.stats.throughput:.1f} img/s; vs PyTorch FP32: {error}"
            )
        else:
            passed = [r.label for r in ran if r.status == "pass"]
            out.bullets.append(
                f"{name}: passed parity: {', '.join(passed) or 'none'}"
                + ("" if profile is not None else f" (no profile yet: run `{cmd('profile')}` for the fastest)")
            )
        for r in ran:
            if r.status == "fail":
                out.bullets.append(f"{name}: **{r.label} failed** — {r.cause or '; '.join(r.failures) or r.reason}")
    ort_int8 = workdir.artifact("onnx-int8-onnxruntime-cpu") if workdir is not None else None
    made_for = ort_int8.config.get("cpu_class") if ort_int8 is not None else None
    if ort_int8 is not None and made_for:
        other = "avx2" if made_for == "vnni" else "vnni"
        out.bullets.append(
            f"Other CPUs: {ort_int8.path} is made for {made_for}-class CPUs; for {other}-class ones (see "
            f"`{cmd('doctor')}`) "
            f"make it with `{cmd('quantize', int8=True, cpu=other)}` and check it there with `{cmd('parity')}`"
        )
    return out


def sections(workdir: WorkDir, steps: list[StepResult] | None = None) -> list[Section]:
    """report.md/html: a summary, the artifacts, then parity's and profile's own sections, what was skipped,
    and the machine."""
    from rn50.reports import loadtest_report, parity_report, profile_report, quantize_report, tune_report
    from rn50.results import loadtest_results, parity_results, profile_results, tune_results

    parity = _load(workdir, parity_results.REPORT, parity_results.load)
    profile = _load(workdir, profile_results.REPORT, profile_results.load)
    loadtest = _load(workdir, loadtest_results.REPORT, loadtest_results.load)
    verdicts = profile_report.verdicts_of(parity)
    out: list[Section] = [recommendation(parity, profile, workdir)]

    summary = Section("Summary", "summary")
    if parity is not None:
        summary.paragraphs.append(f"{parity.verdict_line()} ({_when(parity.created)}).")
    else:
        summary.paragraphs.append("Parity: not run yet.")
    if profile is not None:
        summary.paragraphs += [
            f"Fastest at acceptable error, {line}." for line in profile_report.fastest_lines(profile, verdicts)
        ]
    if loadtest is not None:
        summary.paragraphs.append(f"{loadtest['verdict']} ({_when(loadtest['created'])}).")
    shown = [r.runtime for r in parity.results] if parity is not None else []
    summary.paragraphs += double_notes(shown + ([r.runtime for r in profile.rows] if profile is not None else []))
    if steps:
        step_table = steps_section(steps)
        summary.header, summary.rows = step_table.header, step_table.rows
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

    tuned = _load(workdir, tune_results.REPORT, tune_results.load)
    if tuned is not None:  # rn50 tune: the serving configuration
        image = tune_report.CHART if workdir.path(tune_report.CHART).is_file() else None
        out += tune_report.sections(tuned, image=image)

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


def write(workdir: WorkDir, steps: list[StepResult] | None = None) -> list[Path]:
    parts = sections(workdir, steps)
    title = f"rn50 report — {workdir.root.resolve().name}"
    md, page = workdir.path("report.md"), workdir.path("report.html")
    atomic_write_text(md, to_markdown(title, parts))
    atomic_write_text(page, to_html(title, parts, workdir.root))
    return [md, page]

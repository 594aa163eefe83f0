"""report.md and a self-contained report.html: which artifacts exist, their parity verdicts, their speed,
the machine, and what was skipped and why. Both are rendered from one list of sections."""

from __future__ import annotations

import datetime
import logging
from dataclasses import dataclass
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
    from collections.abc import Callable

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
    from rn50.runtimes.registry import is_gpu, pytorch_path, spec

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
            art = workdir.artifact(best.artifact) if workdir is not None else None
            machine_code = (
                f" (machine code for torch {art.extra.get('torch')} and this CPU's {art.extra.get('isa')} ISA: "
                "make it again on the machine it runs on)"
                if art is not None and art.kind == "pt2"
                else ""
            )
            out.bullets.append(
                f"{name}: ship **{Path(shipped.path).name}** ({best.artifact}) on **{best.runtime}** "
                f"({best.precision}) — "
                f"{best.stats.median_ms:.2f} ms at batch 1, {best.stats.throughput:.1f} img/s; vs PyTorch FP32: {error}"
                + machine_code
            )
            own = fastest(profile, verdicts, 1, where=lambda row: here(row) and pytorch_path(row.runtime))
            if own is not None and own.stats is not None and own is not best:
                own_path = Path(results[(own.runtime, own.artifact)].path).name
                out.bullets.append(
                    f"{name}, staying with PyTorch: **{own_path or own.artifact}** on **{own.runtime}** "
                    f"({own.precision}) — {own.stats.median_ms:.2f} ms at batch 1, {own.stats.throughput:.1f} img/s "
                    f"({own.stats.median_ms / best.stats.median_ms:.2f}× the latency of the one above)"
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


@dataclass(frozen=True)
class Part:
    """One result a work directory may hold and its part of report.md/html, registered once: the file it is read
    from (into its typed result), the chart written beside it, its summary lines and its sections. A new command's
    result joins the report as one row of ``PARTS``."""

    name: str
    file: str
    load: Callable[[Path], Any]
    chart: str | None
    sections: Callable[[Any, str | None, Found], list[Section]]  # (result, chart or None, every part's result)
    summary: Callable[[Any, Found], list[str]] = lambda _result, _found: []
    missing: Section | None = None  # what the report says when the file is not there


Found = dict[str, Any]  # part name → its result, None where the directory has none


def _parts() -> tuple[Part, ...]:
    from rn50.reports import loadtest_report, parity_report, profile_report, quantize_report, tune_report
    from rn50.results import loadtest_results, parity_results, profile_results, tune_results

    def verdicts(found: Found) -> Any:
        return profile_report.verdicts_of(found["parity"])

    return (
        Part(
            "parity",
            parity_results.REPORT,
            parity_results.load,
            parity_report.PLOT,
            lambda r, image, _f: parity_report.sections(r, image=image),
            lambda r, _f: [f"{r.verdict_line()} ({_when(r.created)})."],
            Section("Verdicts", "verdicts", paragraphs=[f"No {parity_results.REPORT} in this directory."]),
        ),
        Part(
            "profile",
            profile_results.REPORT,
            profile_results.load,
            profile_report.CHART,
            lambda r, image, found: profile_report.sections(r, verdicts(found), image=image),
            lambda r, found: [
                f"Fastest at acceptable error, {line}." for line in profile_report.fastest_lines(r, verdicts(found))
            ],
            Section("Speed", "speed", paragraphs=[f"No {profile_results.REPORT} in this directory."]),
        ),
        Part(
            "loadtest",
            loadtest_results.REPORT,
            loadtest_results.load,
            loadtest_report.CHART,
            lambda r, image, _f: loadtest_report.sections(r, image=image),
            lambda r, _f: [f"{r.verdict_line()} ({_when(r.created)})."],
        ),
        Part(
            "tune",
            tune_results.REPORT,
            tune_results.load,
            tune_report.CHART,
            lambda r, image, _f: tune_report.sections(r, image=image),
        ),
        Part(
            "quantize",
            quantize_report.REPORT,
            quantize_report.load,
            quantize_report.BUDGET_CHART,
            lambda searches, image, _f: quantize_report.budget_sections(searches, image=image),
        ),
    )


def sections(workdir: WorkDir, steps: list[StepResult] | None = None) -> list[Section]:
    """report.md/html: what to ship, a summary, the artifacts, then each result's own sections (``PARTS``), what was
    skipped, and the machine."""
    parts = _parts()
    found: Found = {part.name: _load(workdir, part.file, part.load) for part in parts}
    parity, profile = found["parity"], found["profile"]
    out: list[Section] = [recommendation(parity, profile, workdir)]

    summary = Section("Summary", "summary")
    if parity is None:
        summary.paragraphs.append("Parity: not run yet.")
    for part in parts:
        if found[part.name] is not None:
            summary.paragraphs += part.summary(found[part.name], found)
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

    for part in parts:
        result = found[part.name]
        if result is None:
            out += [part.missing] if part.missing is not None else []
            continue
        image = part.chart if part.chart is not None and workdir.path(part.chart).is_file() else None
        out += part.sections(result, image, found)

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

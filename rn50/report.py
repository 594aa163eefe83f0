"""report.md and a self-contained report.html: which artifacts exist, their parity verdicts, their speed,
the machine, and what was skipped and why. Both are rendered from one list of sections."""

from __future__ import annotations

import base64
import datetime
import html
import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from rn50.artifacts import WorkDir, atomic_write_text
from rn50.errors import UsageError
from rn50.machine import describe
from rn50.runtimes.registry import standin_note

if TYPE_CHECKING:
    from pathlib import Path

log = logging.getLogger(__name__)


@dataclass
class Section:
    title: str
    anchor: str
    paragraphs: list[str] = field(default_factory=list)
    header: list[str] = field(default_factory=list)
    rows: list[list[str]] = field(default_factory=list)
    images: list[tuple[str, str]] = field(default_factory=list)  # (alt text, file name in the work directory)


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
    from rn50 import parity_report, profile_report

    parity = _load(workdir, "parity.json", parity_report.load)
    profile = _load(workdir, "profile.json", profile_report.load)
    verdicts = profile_report.verdicts_of(parity)
    out: list[Section] = []

    summary = Section("Summary", "summary")
    if parity is not None:
        ran = [r for r in parity.results if r.metrics is not None]
        failed = [r for r in ran if r.status == "fail"] + [r for r in parity.results if r.status == "error"]
        summary.paragraphs.append(f"Parity: **{'PASS' if parity.passed else 'FAIL'}** — {len(ran) - len(failed)} of {len(ran)} "
                                  f"runtime × artifact pairs within thresholds ({_when(parity.created)}).")  # fmt: skip
    else:
        summary.paragraphs.append("Parity: not run yet.")
    if profile is not None:
        for b in sorted({r.batch for r in profile.measured if r.batch is not None}):
            best = profile_report.fastest(profile, verdicts, b)
            if best is not None and best.stats is not None:
                summary.paragraphs.append(f"Fastest at acceptable error, batch {b}: **{best.label}** "
                                          f"({best.stats.median_ms:.2f} ms, {best.stats.throughput:.1f} img/s).")  # fmt: skip
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

    par = Section("Parity verdicts", "verdicts")
    if parity is not None:
        par.paragraphs.append(f"Against {parity.reference.label} on {parity.reference.device}; feeds: {parity.feeds.description}.")
        par.header = ["runtime", "artifact", "precision", "device", "cos worst", "max abs", "SQNR dB", "top-1 agr", "thresholds", "verdict"]
        for r in parity.results:
            m = r.metrics
            verdict = {"pass": "pass", "fail": "FAIL: " + "; ".join(r.failures), "skipped": f"skipped: {r.reason}", "error": f"error: {r.reason}"}[r.status]
            if r.status == "skipped":
                continue  # listed under "Skipped, and why"
            if m is None:
                par.rows.append([r.runtime, r.artifact, r.precision, "–", "", "", "", "", "", verdict])
            else:
                par.rows.append([r.runtime, r.artifact, r.precision, str(r.device), f"{m.cosine_min:.6f}", f"{m.max_abs:.3g}",
                                 f"{m.sqnr_db:.1f}", f"{m.top1_agreement:.3f}", r.thresholds, verdict])  # fmt: skip
        if workdir.path("parity.png").is_file():
            par.images.append(("error distribution per runtime", "parity.png"))
    else:
        par.paragraphs.append("No parity.json in this directory.")
    out.append(par)

    speed = Section("Speed", "speed")
    if profile is not None:
        s = profile.settings
        phase = f"{s.iterations} iterations" if s.iterations else f"{s.duration_s} s"
        speed.paragraphs.append(f"Statistics over {phase} per row after {s.warmup_s} s of warm-up; {s.threads} CPU threads; "
                                f"Latency is end to end from host memory ({_when(profile.created)}).")  # fmt: skip
        speed.header = ["runtime", "artifact", "precision", "batch", "metric", "median ms", "p99 ms", "img/s", "CV", "parity"]
        for r in profile.measured:
            mark = profile_report.parity_mark(r, verdicts)
            st = r.stats
            speed.rows.append([r.runtime, r.artifact, r.precision, str(r.batch), r.metric, f"{st.median_ms:.3f}", f"{st.p99_ms:.3f}",
                               f"{st.throughput:.1f}", f"{st.cv:.1%}" + (" (high)" if st.unstable else ""), mark])  # fmt: skip
        if workdir.path("profile.png").is_file():
            speed.images.append(("latency per runtime and batch; speed against error", "profile.png"))
    else:
        speed.paragraphs.append("No profile.json in this directory.")
    out.append(speed)

    skipped = Section("Skipped, and why", "skipped", header=["what", "why"])
    for st in steps or []:
        if st.status in ("skipped", "not run", "failed"):
            skipped.rows.append([f"step {st.name} ({st.status})", st.detail])
    for r in parity.results if parity is not None else ():
        if r.metrics is None:
            skipped.rows.append([f"parity {r.runtime} · {r.artifact}", str(r.reason)])
    for r in profile.rows if profile is not None else ():
        if r.stats is None:
            skipped.rows.append([f"profile {r.runtime} · {r.artifact}" + (f" batch {r.batch} {r.metric}" if r.batch else ""), str(r.reason)])
    if not skipped.rows:
        skipped.paragraphs.append("Nothing was skipped.")
    out.append(skipped)

    machine = (profile.machine if profile is not None else None) or describe()
    cpu = machine.get("cpu", {})
    gpus = machine.get("gpus") or []
    mach = Section("Machine", "machine", header=["item", "value"])
    mach.rows = [["CPU", f"{cpu.get('model')} ({cpu.get('usable_cores')} usable cores)"],
                 ["INT8 CPU features", ", ".join(cpu.get("int8_features") or []) or "none"],
                 ["GPU", "; ".join(f"{g['name']} (sm {g['compute_cap']}, driver {g['driver_version']}, SM clock {g['clocks.sm']})" for g in gpus) or "none"],
                 ["OS", str(machine.get("os"))]]  # fmt: skip
    mach.rows += [[k, str(machine.get(k))] for k in ("python", "torch", "onnx", "onnxruntime", "onnxsim", "tensorrt", "rn50") if k in machine]
    out.append(mach)
    return out


def _md_cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def to_markdown(parts: list[Section], title: str) -> str:
    lines = [f"# {title}", ""]
    for s in parts:
        lines += [f"## {s.title}", ""]
        lines += [p + "\n" for p in s.paragraphs]
        if s.header:
            lines += ["| " + " | ".join(s.header) + " |", "|" + "---|" * len(s.header)]
            lines += ["| " + " | ".join(_md_cell(c) for c in row) + " |" for row in s.rows]
            lines.append("")
        lines += [f"![{alt}]({name})\n" for alt, name in s.images]
    return "\n".join(lines) + "\n"


CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:2rem auto;max-width:1200px;color:#1b1f24;padding:0 1rem}
h1{font-size:1.6rem}h2{font-size:1.2rem;margin-top:2rem;border-bottom:1px solid #d0d7de;padding-bottom:.3rem}
table{border-collapse:collapse;font-size:.85rem;margin:.5rem 0}th,td{border:1px solid #d0d7de;padding:.25rem .5rem;text-align:left;vertical-align:top}
th{background:#f6f8fa}td.pass{color:#1a7f37;font-weight:600}td.fail{color:#cf222e;font-weight:600}td.skip{color:#9a6700}
img{max-width:100%;border:1px solid #d0d7de;margin:.5rem 0}
"""


def _inline(text: str) -> str:
    """Escape, then turn **bold** into <strong>."""
    parts = html.escape(text).split("**")
    return "".join(f"<strong>{p}</strong>" if i % 2 else p for i, p in enumerate(parts))


def _cell_class(text: str) -> str:
    low = text.lower()
    if low == "pass" or low == "reference":
        return ' class="pass"'
    if low.startswith(("fail", "error")):
        return ' class="fail"'
    if low.startswith("skipped") or low == "not run":
        return ' class="skip"'
    return ""


def to_html(parts: list[Section], title: str, folder: Path) -> str:
    body = [f"<h1>{html.escape(title)}</h1>"]
    for s in parts:
        body.append(f'<h2 id="{s.anchor}">{html.escape(s.title)}</h2>')
        body += [f"<p>{_inline(p)}</p>" for p in s.paragraphs]
        if s.header:
            body.append(f'<table id="{s.anchor}-table"><thead><tr>' + "".join(f"<th>{html.escape(h)}</th>" for h in s.header) + "</tr></thead><tbody>")
            body += ["<tr>" + "".join(f"<td{_cell_class(c)}>{html.escape(c)}</td>" for c in row) + "</tr>" for row in s.rows]
            body.append("</tbody></table>")
        for alt, name in s.images:
            data = base64.b64encode((folder / name).read_bytes()).decode()
            body.append(f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{data}">')
    return (f'<!doctype html>\n<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>'
            f"<style>{CSS}</style></head><body>\n" + "\n".join(body) + "\n</body></html>\n")  # fmt: skip


def write(workdir: WorkDir, steps: list[Any] | None = None) -> list[Path]:
    parts = sections(workdir, steps)
    title = f"rn50 report — {workdir.root.resolve().name}"
    md, page = workdir.path("report.md"), workdir.path("report.html")
    atomic_write_text(md, to_markdown(parts, title))
    atomic_write_text(page, to_html(parts, title, workdir.root))
    return [md, page]

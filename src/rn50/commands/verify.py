"""``rn50 verify``: every artifact in the manifest checked — its file, its sha256, the chain of parents it
was made from, and an engine's sidecar — without running a model."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from rn50.artifacts import MANIFEST, PARTIAL, made_by, sha256_file
from rn50.commands.outcome import QUIET, Ui
from rn50.errors import CheckFailed
from rn50.reports.render import Section
from rn50.runtimes.kinds import KINDS, recorded_suffixes, served_filenames

if TYPE_CHECKING:
    from pathlib import Path

    from rn50.artifacts import WorkDir

Status = Literal["ok", "missing", "changed", "stale-parent", "bad-sidecar", "unrecorded"]
FAILING: tuple[Status, ...] = ("missing", "changed", "stale-parent", "bad-sidecar")


@dataclass(frozen=True)
class Finding:
    artifact: str
    path: str
    status: Status
    detail: str
    fix: str = ""

    @property
    def failed(self) -> bool:
        return self.status in FAILING


@dataclass(frozen=True)
class VerifyOutcome:
    findings: list[Finding]

    @property
    def error(self) -> CheckFailed | None:
        failed = [f for f in self.findings if f.failed]
        if not failed:
            return None
        return CheckFailed(
            f"{len(failed)} of {len(self.findings)} artifacts failed verification, first {failed[0].artifact}: "
            f"{failed[0].detail}",
            fix=failed[0].fix,
        )

    def sections(self) -> list[Section]:
        """One line an artifact: its status, name, file, the detail and the fix."""
        return [
            Section(
                "",
                paragraphs=[
                    f"{f.status:>12}  {f.artifact} {f.path}: {f.detail}" + (f" — fix: {f.fix}" if f.fix else "")
                    for f in self.findings
                ],
            )
        ]

    def to_dict(self) -> dict[str, object]:
        """``verdict`` "ok" or "failed" (exit 1), how many failed, and every finding."""
        failed = sum(f.failed for f in self.findings)
        return {"verdict": "failed" if failed else "ok", "failed": failed, "findings": self.findings}


def verify(_options: None, workdir: WorkDir, _ui: Ui = QUIET) -> VerifyOutcome:
    """Check every artifact in the manifest: file, sha256, parent chain, engine sidecars. Exit 1 on a mismatch."""
    return VerifyOutcome(findings(workdir))


def findings(workdir: WorkDir) -> list[Finding]:
    arts = workdir.artifacts()
    model = workdir.manifest().get("model") or {}
    current = {a.sha256 for a in arts} | {str(model.get("weights_sha256"))}
    out = []
    for art in arts:
        path = workdir.path(art.path)
        fix = f"re-run `{made_by(art.name)} --out {workdir.root}`"
        if not path.is_file():
            out.append(Finding(art.name, art.path, "missing", "the file is gone", fix))
            continue
        digest = sha256_file(path)
        if digest != art.sha256:
            out.append(
                Finding(
                    art.name,
                    art.path,
                    "changed",
                    f"sha256 {digest[:12]}, manifest {art.sha256[:12]}",
                    fix + " or restore the file",
                )
            )
            continue
        if art.parent_sha256 and art.parent_sha256 not in current:
            out.append(
                Finding(
                    art.name,
                    art.path,
                    "stale-parent",
                    f"made from {art.parent_sha256[:12]}, which is no longer in this directory (its parent was remade)",
                    fix,
                )
            )
            continue
        kind = KINDS.get(art.kind)
        sidecar_problem = kind.sidecar_problem if kind is not None else None
        if sidecar_problem is not None:
            problem = sidecar_problem(path, digest)
            if problem:
                out.append(Finding(art.name, art.path, "bad-sidecar", problem, fix))
                continue
        out.append(Finding(art.name, art.path, "ok", f"sha256 {digest[:12]}"))
    known = {workdir.path(a.path).resolve() for a in arts}
    for path, (artifact, sha) in _repository_copies(workdir).items():
        known.add(path.resolve())
        rel = str(path.relative_to(workdir.root))
        digest = sha256_file(path)
        if digest == sha:
            out.append(Finding(artifact, rel, "ok", f"Triton repository copy, sha256 {digest[:12]}"))
        else:
            fix = f"re-run `rn50 triton-repo --out {workdir.root}`"
            out.append(
                Finding(artifact, rel, "changed", f"Triton copy: sha256 {digest[:12]}, made from {sha[:12]}", fix)
            )
    for path in sorted(workdir.root.rglob("*")):
        if (
            path.is_file()
            and path.suffix in recorded_suffixes()
            and path.resolve() not in known
            and not path.name.endswith(PARTIAL)
        ):
            out.append(
                Finding(
                    "–",
                    str(path.relative_to(workdir.root)),
                    "unrecorded",
                    f"not in {MANIFEST} (left by an interrupted run?); rn50 ignores it",
                )
            )
    return out


def _repository_copies(workdir: WorkDir) -> dict[Path, tuple[str, str]]:
    """The model files of the Triton repositories inside the work directory, as their index lists them: path →
    (the artifact it is a copy of, that artifact's sha256)."""
    from rn50.serving.triton_config import REPOSITORY_INDEX, repository_models

    copies = {}
    for index in workdir.root.rglob(REPOSITORY_INDEX):
        for m in repository_models(index):
            if not all(isinstance(m.get(k), str) for k in ("artifact", "sha256")):
                continue
            version = index.parent / m["name"] / "1"
            main = next((f for f in sorted(version.glob("model.*")) if f.name in served_filenames()), None)
            if main is not None and version.resolve().is_relative_to(workdir.root.resolve()):
                copies[main] = (m["artifact"], m["sha256"])
    return copies

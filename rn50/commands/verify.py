"""``rn50 verify``: every artifact in the manifest checked — its file, its sha256, the chain of parents it
was made from, and an engine's sidecar — without running a model."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from rn50.artifacts import MANIFEST, PARTIAL, made_by, sha256_file
from rn50.errors import UsageError

if TYPE_CHECKING:
    from pathlib import Path

    from rn50.artifacts import WorkDir

Status = Literal["ok", "missing", "changed", "stale-parent", "bad-sidecar", "unrecorded"]
FAILING: tuple[Status, ...] = ("missing", "changed", "stale-parent", "bad-sidecar")
RECORDED_SUFFIXES = (".onnx", ".engine", ".xml", ".bin")  # files rn50 records; one of these not in the manifest is reported


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


def verify(workdir: WorkDir) -> list[Finding]:
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
            out.append(Finding(art.name, art.path, "changed", f"sha256 {digest[:12]}, manifest {art.sha256[:12]}", fix + " or restore the file"))
            continue
        if art.parent_sha256 and art.parent_sha256 not in current:
            out.append(Finding(art.name, art.path, "stale-parent",
                               f"made from {art.parent_sha256[:12]}, which is no longer in this directory (its parent was remade)", fix))  # fmt: skip
            continue
        if art.kind == "engine":
            problem = _engine_problem(path, digest)
            if problem:
                out.append(Finding(art.name, art.path, "bad-sidecar", problem, fix))
                continue
        out.append(Finding(art.name, art.path, "ok", f"sha256 {digest[:12]}"))
    known = {workdir.path(a.path).resolve() for a in arts}
    for path in sorted(workdir.root.rglob("*")):
        if path.is_file() and path.suffix in RECORDED_SUFFIXES and path.resolve() not in known and not path.name.endswith(PARTIAL):
            out.append(Finding("–", str(path.relative_to(workdir.root)), "unrecorded",
                               f"not in {MANIFEST} (left by an interrupted run?); rn50 ignores it"))  # fmt: skip
    return out


def _engine_problem(engine: Path, digest: str) -> str | None:
    from rn50.runtimes.trt_plan import Sidecar, check_engine_file, sidecar_path

    try:
        sidecar = Sidecar.load(sidecar_path(engine))
        check_engine_file(sidecar, engine, digest)
    except UsageError as e:
        return e.problem
    return None

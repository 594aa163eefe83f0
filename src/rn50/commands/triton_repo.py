"""``rn50 triton-repo``: a Triton model repository for the artifacts of a work directory, on Triton's stock
backends (onnxruntime, tensorrt, openvino), each config.pbtxt checked before it is written."""

from __future__ import annotations

import contextlib
import errno
import json
import shutil
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from rn50.artifacts import atomic_write_text
from rn50.commands.flags import flag
from rn50.commands.options import artifacts_flag, instance_threads_flag
from rn50.commands.outcome import QUIET, Ui
from rn50.errors import EnvironmentProblem, UsageError
from rn50.jsonio import jsonable
from rn50.machine import check_threads
from rn50.reports.render import Section
from rn50.runtimes.kinds import DEVICES, KINDS
from rn50.runtimes.registry import check_names, from_test_double
from rn50.serving.triton_config import (
    REPOSITORY_INDEX,
    Batching,
    build,
    check,
    model_name,
    parse,
    repository_models,
    to_text,
)

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

    from rn50.artifacts import WorkDir
    from rn50.errors import Rn50Error

REPOSITORY = "triton"  # the repository's folder in the work directory, unless --repo says otherwise
PARTIAL = ".partial"


@dataclass(frozen=True)
class TritonRepoOptions:
    repo: Path | None = flag("--repo", default=None, help="Repository folder (default: triton/ in the work directory).")
    artifacts: list[str] | None = artifacts_flag("Artifact(s) of the manifest to include (default: every model).")
    devices: list[str] | None = flag(
        "--device",
        default=None,
        cli_type=list[str] | None,
        help="cpu, gpu (default both): which instance groups to write.",
    )
    batching: Batching = field(default_factory=Batching)
    threads: int | None = instance_threads_flag("the backend's")
    from_tune: bool = flag(
        "--from-tune",
        default=False,
        help="Write the artifact rn50 tune tuned, with the configuration it chose (from tune.json).",
    )

    def check(self) -> None:
        if self.from_tune and (self.batching != Batching() or self.threads is not None or self.artifacts):
            raise UsageError(
                "--from-tune sets the artifact, batching, instances and threads itself",
                fix="drop --artifact, --max-batch-size, --queue-delay-us, --instances and --threads, or --from-tune",
            )
        self.batching.check()
        check_names("device", self.devices, DEVICES)
        if self.threads is not None:
            check_threads(self.threads)


@dataclass(frozen=True)
class RepoModel:
    name: str
    artifact: str
    device: str
    backend: str
    precision: str
    max_batch_size: int
    preferred_batch_sizes: tuple[int, ...]
    sha256: str


@dataclass(frozen=True)
class RepoSkipped:
    artifact: str
    reason: str


@dataclass(frozen=True)
class TritonRepoOutcome:
    repository: Path
    models: list[RepoModel]
    skipped: list[RepoSkipped]
    error: Rn50Error | None = None

    def sections(self) -> list[Section]:
        part = Section(
            f"Triton model repository {self.repository}",
            "triton-repo",
            header=["model", "artifact", "backend", "device", "precision", "max batch", "preferred"],
            rows=[
                [
                    m.name,
                    m.artifact,
                    m.backend,
                    m.device,
                    m.precision,
                    str(m.max_batch_size),
                    ",".join(map(str, m.preferred_batch_sizes)),
                ]
                for m in self.models
            ],
            bullets=[f"skipped {s.artifact}: {s.reason}" for s in self.skipped],
            after=[
                f"wrote {len(self.models)} model(s); every config.pbtxt parsed with Triton's ModelConfig and "
                "checked against its artifact"
            ],
        )
        return [part]

    def to_dict(self) -> dict[str, Any]:
        return jsonable(self)


def _built_by(path: Path) -> str:
    """The runtime label an engine's sidecar records (a test double's, for an engine of one)."""
    from rn50.runtimes.trt_plan import Sidecar, sidecar_path

    return Sidecar.load(sidecar_path(path)).runtime


def tuned_options(options: TritonRepoOptions, workdir: WorkDir) -> TritonRepoOptions:
    """``options`` for the artifact tune.json tuned, with the configuration it chose (refused when there is none, or
    when the artifact changed since)."""
    import dataclasses

    from rn50.results import tune_results
    from rn50.runtimes.registry import spec

    path = workdir.path(tune_results.REPORT)
    if not path.is_file():
        raise UsageError(f"no {tune_results.REPORT} in {workdir.root}", fix="run rn50 tune first")
    tuned = tune_results.load(path)
    if tuned.best is None:
        raise UsageError(f"{path}: rn50 tune found no configuration within its budget", fix="run rn50 tune again")
    best = tuned.best.config
    art = workdir.by_name([tuned.artifact])[tuned.artifact]
    if art.sha256 != tuned.sha256:
        raise UsageError(f"{tuned.artifact} changed since rn50 tune measured it", fix="run rn50 tune again")
    return dataclasses.replace(
        options,
        artifacts=[tuned.artifact],
        devices=[spec(tuned.runtime).device],
        batching=Batching(best.max_batch, best.queue_delay_us, best.instances),
        threads=best.threads,
    )


def _write_index(root: Path, models: list[RepoModel], skipped: list[RepoSkipped]) -> None:
    """rn50-repository.json: this run's models, and those an earlier run wrote that are still there."""
    written = {m.name for m in models}
    kept = [
        m
        for m in repository_models(root / REPOSITORY_INDEX)  # an earlier run's: kept
        if m["name"] not in written and (root / str(m["name"])).is_dir()
    ]
    index = jsonable({"models": [*kept, *models], "skipped": skipped})
    atomic_write_text(root / REPOSITORY_INDEX, json.dumps(index, indent=2) + "\n")


@contextlib.contextmanager
def _model_folder(target: Path) -> Iterator[Path]:
    """A model folder written whole under a temporary name, then put in place of the old one."""
    partial = target.with_name(target.name + PARTIAL)
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    try:
        yield partial
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    shutil.rmtree(target, ignore_errors=True)
    partial.rename(target)


def triton_repo(options: TritonRepoOptions, workdir: WorkDir, _ui: Ui = QUIET) -> TritonRepoOutcome:
    """A Triton model repository for the work directory's artifacts, on Triton's stock backends."""
    if options.from_tune:
        options = tuned_options(options, workdir)
    root = options.repo or workdir.path(REPOSITORY)
    known = workdir.by_name(options.artifacts)
    models: list[RepoModel] = []
    skipped: list[RepoSkipped] = []
    planned = []
    for art in known.values():
        kind = KINDS.get(art.kind)
        if kind is None or (options.artifacts and art.name not in options.artifacts):
            continue
        path = workdir.checked(art)  # a changed file never reaches a repository
        files = [path, *(workdir.require(c)[1] for c in kind.companion_names(art.name))]  # an IR: .xml and .bin
        if kind.io is None or not kind.served:
            skipped.append(RepoSkipped(art.name, kind.not_served))
            continue
        if kind.batch_profile and from_test_double(_built_by(path)):
            skipped.append(RepoSkipped(art.name, f"an engine of {_built_by(path)}, a test double: no server loads it"))
            continue
        try:
            io = kind.io(path)
        except EnvironmentProblem as e:
            skipped.append(RepoSkipped(art.name, e.message))
            continue
        for placement in kind.placements(art.precision, art.config.get("target")):
            if options.devices and placement.device not in options.devices:
                continue
            name = model_name(art.name, placement.device)
            cfg = build(
                name,
                placement,
                io,
                options.batching,
                precision=art.precision,
                artifact=art.name,
                sha256=art.sha256,
                threads=options.threads,
            )
            header = [
                f"written by rn50 triton-repo from {art.name} ({art.path}, sha256 {art.sha256[:12]}); "
                f"{placement.backend} backend"
            ]
            if placement.backend == "tensorrt":
                header.append(
                    "a TensorRT engine loads only on the TensorRT version and GPU it was built for (see its .json "
                    "sidecar)"
                )
            text = to_text(cfg, header)
            check(parse(text), io, where=f"{name}/config.pbtxt")  # before anything is written
            planned.append((name, placement, art, files, text, cfg))
    if not planned:
        why = "; ".join(f"{s.artifact}: {s.reason}" for s in skipped) or "no model artifact matches --artifact/--device"
        raise UsageError(
            f"nothing to put in a Triton repository ({why})", fix="run rn50 export first, or drop a filter"
        )
    existed = root.exists()
    try:
        root.mkdir(parents=True, exist_ok=True)
        for name, placement, art, files, text, cfg in planned:
            with _model_folder(root / name) as folder:
                version = folder / "1"
                version.mkdir()
                stem = placement.filename.rsplit(".", 1)[0]
                for src in files:  # model.onnx / model.plan / model.xml + model.bin
                    shutil.copyfile(src, version / (stem + src.suffix if src is not files[0] else placement.filename))
                (folder / "config.pbtxt").write_text(text)
            models.append(
                RepoModel(
                    name,
                    art.name,
                    placement.device,
                    placement.backend,
                    art.precision,
                    cfg.max_batch_size,
                    tuple(cfg.dynamic_batching.preferred_batch_size),
                    art.sha256,
                )
            )
            _write_index(root, models, skipped)  # after each model: the index always lists the folders there
    except OSError as e:
        if not existed and not models:
            shutil.rmtree(root, ignore_errors=True)
        if e.errno == errno.ENOSPC:
            raise UsageError(
                f"no space left on the device writing the Triton repository {root}"
                + (f" ({len(models)} of {len(planned)} models written and listed)" if models else ""),
                fix="free some space, or pass --repo a folder on another disk",
            ) from None
        raise UsageError(
            f"cannot write the Triton repository {root}: {e.strerror or e}", fix="pass --repo a folder you can write to"
        ) from None
    return TritonRepoOutcome(root, models, skipped)

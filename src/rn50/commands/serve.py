"""``rn50 serve``: one artifact on a real Triton Inference Server (started with PyTriton), answered by rn50's
runner inside Triton's Python backend, with Triton's dynamic batcher in front and its HTTP, gRPC and
metrics endpoints. Ready only once the model has answered a request through the server."""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from rn50.artifacts import PARTIAL
from rn50.commands.flags import flag
from rn50.commands.options import instance_threads_flag, model_name_flag
from rn50.commands.outcome import QUIET, Ui
from rn50.errors import CheckFailed, EnvironmentProblem, Stopped, UsageError
from rn50.jsonio import jsonable
from rn50.machine import check_threads
from rn50.reports.render import Section
from rn50.runtimes.kinds import KINDS, Placement
from rn50.runtimes.registry import (
    RUNTIME_TABLE,
    check_names,
    label,
    reads,
    result_precision,
    runtime_names,
    spec,
    unavailable_reason,
)
from rn50.serving.backend import INPUT, OUTPUT, ServedArtifact
from rn50.serving.server import Endpoints, check_installed, python_path, running, scratch_folder, wait
from rn50.serving.triton_config import Batching, build, check, parse, to_text

if TYPE_CHECKING:
    from rn50.artifacts import WorkDir
    from rn50.errors import Rn50Error

DEFAULT_ARTIFACT = "onnx-fp32"
DEFAULT_MODEL = "resnet50"


def default_runtime(kind: str) -> str | None:
    """The runtime `rn50 serve` runs an artifact of ``kind`` on, unless --runtime says otherwise (from the table)."""
    return next((s.name for s in RUNTIME_TABLE.values() if kind in s.serves), None)


@dataclass(frozen=True)
class ServeOptions:
    artifact: str = flag("--artifact", default=DEFAULT_ARTIFACT, help="Artifact of the manifest to serve.")
    runtime: str | None = flag(
        "--runtime",
        default=None,
        help=lambda: (
            "Runtime that runs it (default by the artifact's kind: "
            + ", ".join(f"{k} on {default_runtime(k)}" for k in KINDS if default_runtime(k))
            + ")."
        ),
    )
    model: str = model_name_flag()
    endpoints: Endpoints = field(default_factory=Endpoints)
    batching: Batching = field(default_factory=Batching)
    threads: int | None = instance_threads_flag("the runtime's")

    def check(self) -> None:
        check_installed()
        if self.runtime is not None:
            check_names("runtime", [self.runtime], runtime_names(reference=False))
        if not self.model or not all(c.isalnum() or c in "._-" for c in self.model):
            raise UsageError(
                f"--model-name {self.model!r} is not a Triton model name", fix="use letters, digits, '.', '_' and '-'"
            )
        self.batching.check()
        if self.threads is not None:
            check_threads(self.threads)
        self.endpoints.check()


@dataclass(frozen=True)
class Serving:
    """What is being served, once it has answered through the server."""

    model: str
    label: str
    precision: str
    endpoints: Endpoints
    log_file: Path  # Triton's log, kept in the work directory when the server stops
    max_batch_size: int
    live_log: Path  # the same log while the server runs


def unservable(artifact: str, kind: str) -> UsageError:
    served = [k for k, row in KINDS.items() if row.io is not None]
    return UsageError(f"{artifact}: {KINDS[kind].not_served}", fix=f"serve an artifact of kind {', '.join(served)}")


def served_artifact(options: ServeOptions, workdir: WorkDir) -> tuple[ServedArtifact, str]:
    """What to serve, checked: the artifact unchanged, a runtime that runs it and is available here; and its kind."""
    art, path = workdir.require(options.artifact)
    runtime = options.runtime or default_runtime(art.kind)
    if runtime is None or art.kind not in reads(runtime):
        runs = [r for r in runtime_names(reference=False) if art.kind in reads(r)]
        raise UsageError(
            f"{options.artifact} is a {art.kind} artifact; --runtime {runtime} does not run it",
            fix=f"pass --runtime {' or '.join(runs) or '(none)'}",
        )
    precision = result_precision(runtime, art.precision)
    if precision is None:
        raise UsageError(
            f"--runtime {runtime} does not apply to {art.precision} artifacts", fix="serve an FP32 artifact with it"
        )
    reason = unavailable_reason(runtime)
    if reason:
        raise EnvironmentProblem(
            f"cannot serve on {runtime}: {reason}", fix="pick another --runtime, or run on a machine that has it"
        )
    kind = KINDS[art.kind]
    if kind.io is None:
        raise unservable(options.artifact, art.kind)
    for companion in kind.companion_names(art.name):  # an IR is its .xml and its .bin, both unchanged
        workdir.require(companion)
    threads = options.threads if kind.cpu_threads else None
    return ServedArtifact(runtime, precision, art.name, path.resolve(), art.sha256, threads), art.kind


def write_repository(options: ServeOptions, served: ServedArtifact, kind: str, repository: Path) -> int:
    """The one-model repository Triton loads: config.pbtxt (checked like triton-repo's) and model.py."""
    from rn50.serving import triton_model

    read_io = KINDS[kind].io
    if read_io is None:  # refused by served_artifact before anything is started
        raise unservable(served.artifact, kind)
    io = read_io(served.path)
    parameters = served.parameters() | {"sys_path": python_path(), "owner_pid": str(os.getpid())}
    cfg = build(
        options.model,
        Placement(spec(served.runtime).device, "python", "model.py"),
        io,
        options.batching,
        precision=served.precision,
        artifact=served.artifact,
        sha256=served.sha256,
        parameters=parameters,
    )
    text = to_text(
        cfg, [f"written by rn50 serve: {served.artifact} on {served.runtime}, rn50's runner in Triton's Python backend"]
    )
    check(parse(text), io, where=f"{options.model}/config.pbtxt")
    folder = repository / options.model / "1"
    folder.mkdir(parents=True)
    shutil.copyfile(Path(triton_model.__file__), folder / "model.py")
    (folder.parent / "config.pbtxt").write_text(text)
    return int(cfg.max_batch_size)


def answer_through(endpoints: Endpoints, model: str) -> None:
    """One request of a sample crop through the HTTP endpoint: finite logits of the right shape, or a failure."""
    import tritonclient.http as httpclient

    from rn50.samples import sample_crops

    x = sample_crops(1, split="evaluation")
    client = httpclient.InferenceServerClient(endpoints.http_url)
    try:
        request = httpclient.InferInput(INPUT, list(x.shape), "FP32")
        request.set_data_from_numpy(x)
        y = client.infer(model, [request]).as_numpy(OUTPUT)
    except Exception as e:  # tritonclient raises its own exception types for transport and server errors
        raise CheckFailed(f"the served model did not answer: {e}", fix="see the server log") from e
    finally:
        client.close()
    if y is None or y.shape != (1, 1000) or not np.isfinite(y).all():
        raise CheckFailed(
            f"the served model answered {None if y is None else y.shape} instead of finite (1, 1000) logits",
            fix="see the server log",
        )


@dataclass(frozen=True)
class Ready:
    """What `rn50 serve` shows once the model has answered through the server."""

    serving: Serving
    error: Rn50Error | None = None

    def sections(self) -> list[Section]:
        s, e = self.serving, self.serving.endpoints
        return [
            Section(
                "",
                paragraphs=[
                    f"serving {s.label} ({s.precision}) as model '{s.model}', max batch {s.max_batch_size}: HTTP "
                    f"{e.host}:{e.http_port}"
                    + (f" (request bodies up to {e.max_request_mb:g} MB), " if e.max_request_mb else ", ")
                    + f"gRPC {e.host}:{e.grpc_port}, metrics http://{e.host}:{e.metrics_port}/metrics",
                    f"ready (the model answered through the server); Triton's log: {s.live_log}, kept as "
                    f"{s.log_file} when it "
                    "stops; Ctrl-C or SIGTERM stops it",
                ],
            )
        ]

    def to_dict(self) -> dict[str, Any]:
        return {"ready": True} | jsonable(self.serving)


def serve(options: ServeOptions, workdir: WorkDir, ui: Ui = QUIET) -> None:
    """Serve one artifact on a real Triton Inference Server (PyTriton's), through rn50's runner; Ctrl-C or SIGTERM stops
    it: Triton stops taking requests, answers those in flight and exits (exit 130, said as "stopped")."""
    served, kind = served_artifact(options, workdir)
    kept_log = workdir.root.resolve() / f"triton-{options.model}.log"
    ui.status("starting Triton Inference Server…")
    with scratch_folder() as scratch:
        # Triton reads, writes and is given only paths inside the scratch folder (plain ASCII, no spaces), whatever
        # the work directory is called; its log is kept in the work directory when the server stops.
        log_file = scratch / "triton.log"
        ready = False
        try:
            served = served_copy(served, scratch / "served")
            max_batch = write_repository(options, served, kind, scratch / "models")
            with running(scratch / "models", options.endpoints, log_file=log_file) as triton:
                answer_through(options.endpoints, options.model)
                serving = Serving(
                    options.model,
                    label(served.runtime, served.artifact),
                    served.precision,
                    options.endpoints,
                    kept_log,
                    max_batch,
                    log_file,
                )
                ui.show(Ready(serving))
                ready = True
                wait(triton)
        except KeyboardInterrupt:  # Ctrl-C or SIGTERM: the way a server is stopped, said as such (once it served)
            if not ready:
                raise
            raise Stopped("Triton answered the requests in flight, then exited") from None
        finally:
            _keep_log(log_file, kept_log)


def served_copy(served: ServedArtifact, folder: Path) -> ServedArtifact:
    """The served file (with an IR's weights or an engine's sidecar) linked, or copied, into ``folder``: Triton's Python
    stub opens it there, at a path it can encode whatever the work directory's name."""
    import dataclasses

    folder.mkdir()
    for src in [served.path, served.path.with_suffix(".bin"), served.path.with_name(served.path.name + ".json")]:
        if src.is_file():
            dst = folder / ("model" + src.name[len(served.path.stem) :])
            try:
                os.link(src, dst)
            except OSError:  # another filesystem
                shutil.copyfile(src, dst)
    return dataclasses.replace(served, path=folder / ("model" + served.path.suffix))


def _keep_log(log_file: Path, kept: Path) -> Path | None:
    """Triton's log, kept in the work directory (the server's own record of what it did), whole or not at all; where
    that cannot be written (a read-only work directory), in the temporary folder instead, and said where. Best
    effort, never an error of its own: it runs also after Ctrl-C or SIGTERM, which is how a server is stopped
    (rn50's artifact writes refuse to commit then: not this log). Returns where it was kept."""
    if not log_file.is_file():
        return None
    fallback = Path(tempfile.gettempdir()) / f"rn50-{kept.stem}-{os.getpid()}.log"
    for target in (kept, fallback):
        partial = target.with_name(f".{target.name}{PARTIAL}")
        try:
            shutil.copyfile(log_file, partial)
            os.replace(partial, target)
        except OSError as e:
            logging.getLogger(__name__).warning("could not keep Triton's log as %s: %s", target, e.strerror or e)
            continue
        finally:
            with contextlib.suppress(OSError):  # a read-only file system refuses even removing what is not there
                partial.unlink(missing_ok=True)
        if target != kept:
            logging.getLogger(__name__).warning("kept Triton's log as %s instead", target)
        return target
    return None

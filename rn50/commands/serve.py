"""``rn50 serve``: one artifact on a real Triton Inference Server (started with PyTriton), answered by rn50's
runner inside Triton's Python backend, with Triton's dynamic batcher in front and its HTTP, gRPC and
metrics endpoints. Ready only once the model has answered a request through the server."""

from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from rn50.errors import CheckFailed, EnvironmentProblem, UsageError
from rn50.machine import check_threads
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
from rn50.serving.server import Endpoints, check_installed, python_path, running, scratch_repository, wait
from rn50.serving.triton_config import Batching, Placement, artifact_io, build, check, parse, to_text

if TYPE_CHECKING:
    from collections.abc import Callable

    from rn50.artifacts import WorkDir

DEFAULT_ARTIFACT = "onnx-fp32"
DEFAULT_MODEL = "resnet50"


def default_runtime(kind: str) -> str | None:
    """The runtime `rn50 serve` runs an artifact of ``kind`` on unless --runtime says otherwise (the runtime table's)."""
    return next((s.name for s in RUNTIME_TABLE.values() if kind in s.serves), None)


@dataclass(frozen=True)
class ServeOptions:
    artifact: str = DEFAULT_ARTIFACT
    runtime: str | None = None  # default: by the artifact's kind
    model: str = DEFAULT_MODEL
    endpoints: Endpoints = field(default_factory=Endpoints)
    batching: Batching = field(default_factory=Batching)
    threads: int | None = None

    def check(self) -> None:
        check_installed()
        if self.runtime is not None:
            check_names("runtime", [self.runtime], runtime_names(reference=False))
        if not self.model or not all(c.isalnum() or c in "._-" for c in self.model):
            raise UsageError(f"--model-name {self.model!r} is not a Triton model name", fix="use letters, digits, '.', '_' and '-'")
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
    log_file: Path
    max_batch_size: int


def served_artifact(options: ServeOptions, workdir: WorkDir) -> tuple[ServedArtifact, str]:
    """What to serve, checked: the artifact unchanged, a runtime that runs it and is available here; and its kind."""
    art, path = workdir.require(options.artifact)
    runtime = options.runtime or default_runtime(art.kind)
    if runtime is None or art.kind not in reads(runtime):
        runs = [r for r in runtime_names(reference=False) if art.kind in reads(r)]
        raise UsageError(f"{options.artifact} is a {art.kind} artifact; --runtime {runtime} does not run it",
                         fix=f"pass --runtime {' or '.join(runs) or '(none)'}")  # fmt: skip
    precision = result_precision(runtime, art.precision)
    if precision is None:
        raise UsageError(f"--runtime {runtime} does not apply to {art.precision} artifacts", fix="serve an FP32 artifact with it")
    reason = unavailable_reason(runtime)
    if reason:
        raise EnvironmentProblem(f"cannot serve on {runtime}: {reason}", fix="pick another --runtime, or run on a machine that has it")
    if art.kind == "ir":
        workdir.require(art.name + "-weights")  # an IR is its .xml and its .bin, both unchanged
    threads = options.threads if "engine" not in spec(runtime).reads else None
    return ServedArtifact(runtime, precision, art.name, path.resolve(), art.sha256, threads), art.kind


def write_repository(options: ServeOptions, served: ServedArtifact, kind: str, repository: Path) -> int:
    """The one-model repository Triton loads: config.pbtxt (checked like triton-repo's) and model.py."""
    from rn50.serving import triton_model

    io = artifact_io(kind, served.path)
    parameters = served.parameters() | {"sys_path": python_path()}
    cfg = build(options.model, Placement(spec(served.runtime).device, "python", "model.py"), io, options.batching, precision=served.precision,
                artifact=served.artifact, sha256=served.sha256, parameters=parameters)  # fmt: skip
    text = to_text(cfg, [f"written by rn50 serve: {served.artifact} on {served.runtime}, rn50's runner in Triton's Python backend"])
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
        raise CheckFailed(f"the served model answered {None if y is None else y.shape} instead of finite (1, 1000) logits", fix="see the server log")


def serve(options: ServeOptions, workdir: WorkDir, *, on_ready: Callable[[Serving], None]) -> None:
    """Serve until interrupted (Ctrl-C, SIGTERM: Triton stops taking requests, answers those in flight, exits)."""
    options.check()
    served, kind = served_artifact(options, workdir)
    log_file = workdir.root.resolve() / f"triton-{options.model}.log"
    with scratch_repository() as repository:
        max_batch = write_repository(options, served, kind, repository)
        with running(repository, options.endpoints, log_file=log_file) as triton:
            answer_through(options.endpoints, options.model)
            on_ready(Serving(options.model, label(served.runtime, served.artifact), served.precision, options.endpoints, log_file, max_batch))
            wait(triton)


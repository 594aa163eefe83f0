"""What rn50 serves inside Triton's Python backend: one runner, answering each request on its own terms.

Triton's dynamic batcher hands the model several requests at once. Each request is checked alone (a request
with NaN or Inf gets its own error and the others in its batch are answered), the good ones run as one
batch on rn50's runner, and a batch whose outputs are not finite is refused rather than answered. A refusal
says whose fault it is: the request's (NaN/Inf in it, a shape the file does not take: HTTP 400) or the
server's (NaN/Inf logits: HTTP 500).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from rn50.errors import Rn50Error
from rn50.words import cmd

if TYPE_CHECKING:
    from rn50.runtimes.base import Runner


INPUT, OUTPUT = "input", "logits"


@dataclass(frozen=True)
class Refusal:
    """A request not answered: the message its client gets, and whether the request is at fault (Triton's
    INVALID_ARG, HTTP 400) or the server (INTERNAL, HTTP 500)."""

    message: str
    client_error: bool


Answer = np.ndarray | Refusal  # the output rows for one request, or why it gets none


@dataclass(frozen=True)
class ServedArtifact:
    """What a served model runs: passed to the backend as model-config parameters (strings)."""

    runtime: str
    precision: str
    artifact: str
    path: Path
    sha256: str
    threads: int | None = None

    def parameters(self) -> dict[str, str]:
        return {
            "runtime": self.runtime,
            "precision": self.precision,
            "artifact": self.artifact,
            "path": str(self.path),
            "sha256": self.sha256,
            "threads": str(self.threads or ""),
        }

    @classmethod
    def from_parameters(cls, p: dict[str, str]) -> ServedArtifact:
        return cls(
            p["runtime"],
            p["precision"],
            p["artifact"],
            Path(p["path"]),
            p["sha256"],
            int(p["threads"]) if p.get("threads") else None,
        )


def watch_owner(pid: int, poll_s: float = 1.0) -> None:
    """End this process (Triton's Python stub) within ``poll_s`` of process ``pid`` (rn50 serve) ending, however it
    ended: Triton's stubs otherwise outlive a server whose parent was killed (kill -9), holding their memory."""
    import threading
    import time

    def watch() -> None:
        while True:
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                os._exit(0)
            except PermissionError:  # alive, under another user
                pass
            time.sleep(poll_s)

    threading.Thread(target=watch, name="rn50-owner-watch", daemon=True).start()


def non_finite_problem(x: np.ndarray) -> str | None:
    bad = int(x.size - np.count_nonzero(np.isfinite(x)))
    if not bad:
        return None
    return (
        f"input {INPUT!r} holds {bad} NaN/Inf value(s) of {x.size}: rn50 answers finite images only — "
        "check the client's preprocessing (resize 256, centre crop 224, ImageNet mean/std)"
    )


class ServedModel:
    """A runner behind Triton: ``answer(inputs)`` takes one array per request, returns one answer each."""

    def __init__(self, artifact: ServedArtifact, runner: Runner):
        self.artifact = artifact
        self.runner = runner

    @classmethod
    def open(cls, artifact: ServedArtifact) -> ServedModel:
        """Checks the file against its sha256 (a changed file is never served), opens the runner and runs it once,
        so that the model answers before Triton calls it ready."""
        from rn50.artifacts import sha256_file
        from rn50.errors import UsageError
        from rn50.runtimes.registry import Pair, make_runner

        digest = sha256_file(artifact.path)
        if digest != artifact.sha256:
            raise UsageError(
                f"{artifact.path} changed since {cmd('serve')} checked it (sha256 {digest[:12]}, expected "
                f"{artifact.sha256[:12]})",
                fix=f"restart {cmd('serve')}",
            )
        target = Pair(artifact.runtime, artifact.precision, artifact.artifact, artifact.path, sha256=artifact.sha256)
        runner = make_runner(target, threads=artifact.threads)
        runner.__enter__()
        model = cls(artifact, runner)
        warm = model.answer([np.zeros((1, 3, 224, 224), np.float32)])[0]
        if isinstance(warm, Refusal):
            runner.__exit__(None, None, None)
            raise RuntimeError(f"{target.label} does not answer: {warm.message}")
        return model

    def answer(self, inputs: list[np.ndarray]) -> list[Answer]:
        answers: list[Answer | None] = [
            None if problem is None else Refusal(problem, client_error=True)
            for problem in map(non_finite_problem, inputs)
        ]
        good = [i for i, a in enumerate(answers) if a is None]
        if good:
            try:
                y = self.runner.infer({INPUT: np.ascontiguousarray(np.concatenate([inputs[i] for i in good]))})[OUTPUT]
                rows = np.cumsum([0] + [len(inputs[i]) for i in good])
                for j, i in enumerate(good):
                    part = y[rows[j] : rows[j + 1]]
                    answers[i] = (
                        part
                        if np.isfinite(part).all()
                        else Refusal(
                            f"{self.runner.label} produced NaN/Inf logits for this request: not answered",
                            client_error=False,
                        )
                    )
            except Rn50Error as e:  # a runner's own refusal, e.g. a shape its file does not take
                for i in good:
                    answers[i] = Refusal(e.message, client_error=True)
        return [a if a is not None else Refusal("not answered", client_error=False) for a in answers]

    def close(self) -> None:
        self.runner.__exit__(None, None, None)

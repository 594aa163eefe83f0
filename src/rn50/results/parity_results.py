"""What a parity run found (parity.json): per runtime × artifact the verdict, its error statistics against PyTorch FP32
and, for INT8, the file's error and the runtime's (its fidelity to the file); the feeds and the reference it ran on.
Types and their JSON form only: the run is ``rn50.evaluation``'s, the Markdown and HTML are ``rn50.reports``'."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from rn50.calibration.outliers import Excess, InputCause
from rn50.errors import UsageError
from rn50.jsonio import jsonable, read_json
from rn50.metrics import InputVerdict, OutputMetrics, PerInput
from rn50.runtimes.registry import label
from rn50.words import cmd

if TYPE_CHECKING:
    from pathlib import Path

Verdict = Literal["pass", "fail", "skipped", "error"]


FAILED: tuple[Verdict, ...] = ("fail", "error")


@dataclass(frozen=True)
class Divergence:
    """Where a failing row's runtime first departs from the PyTorch reference, layer by layer, on its failing
    inputs: each Conv/Gemm output the runtime computed (marked as a graph output, as Polygraphy's ``mark all``)
    against the same layer's output in PyTorch (a forward hook; a BatchNorm folded into the convolution is hooked
    after it)."""

    first: str | None  # the first layer, in graph order, that departs (None: none does)
    first_cosine: float | None
    layers: tuple[tuple[str, float, float], ...]  # (layer, median cosine on the failing inputs, on passing ones)
    inputs: int  # failing inputs compared
    note: str = ""  # why it could not be located, where it could not


@dataclass(frozen=True)
class TriedFix:
    """The fix parity offers for a failing INT8 row, tried on the same feeds: its Q/DQ file with the layers where the
    failing inputs depart kept in float (``rn50 quantize --int8 --keep-float …``), as the file would compute."""

    keep_float: tuple[str, ...]  # by PyTorch module where known
    metrics: OutputMetrics  # the variant's own semantics against PyTorch FP32, on every input
    failures: tuple[str, ...]  # what still fails under the row's thresholds (empty: the fix works here)


@dataclass(frozen=True)
class PairResult:
    runtime: str
    artifact: str
    precision: str
    path: str
    status: Verdict
    device: str | None = None
    metrics: OutputMetrics | None = None
    thresholds: str = ""
    failures: tuple[str, ...] = ()
    reason: str | None = None  # why skipped / errored
    accuracy_top1: float | None = None
    accuracy_top5: float | None = None
    seconds: float | None = None
    sha256: str | None = None  # of the file tested (checked against the manifest first)
    # INT8: the Q/DQ file whose own semantics the result is compared with (an engine's or IR's source), the file's
    # error (its semantics vs PyTorch FP32, judged by the INT8 thresholds) and its fidelity (the runtime vs the file,
    # judged by ``fidelity_thresholds``); when the runtime deviates, its likely cause and the fix.
    semantics_file: str | None = None
    quantization: OutputMetrics | None = None
    fidelity: OutputMetrics | None = None
    fidelity_thresholds: str = ""
    cause: str | None = None
    fix: str | None = None
    # Each input's error (the result vs PyTorch FP32; for INT8 also the file's), and which inputs the verdict hangs
    # on (for the result, or for INT8 the file when the file is what fails).
    inputs: PerInput | None = None
    file_inputs: PerInput | None = None
    input_verdict: InputVerdict | None = None
    # A failing INT8 row: per failing input, where its activations leave the file's ranges and where its error first
    # departs from the FP32 graph (rn50.evaluation.explanation).
    causes: tuple[InputCause, ...] = ()
    # A failing row whose runtime can mark its layers: where it first departs from PyTorch (rn50.evaluation).
    divergence: Divergence | None = None
    tried_fix: TriedFix | None = None

    @property
    def label(self) -> str:
        return label(self.runtime, self.artifact)


@dataclass(frozen=True)
class FeedSummary:
    """What parity compared on (parity.json's ``feeds``)."""

    kind: str
    description: str
    count: int
    fingerprint: str
    skipped_files: int
    warnings: tuple[str, ...]
    labelled: bool
    names: tuple[str, ...] = ()  # each input, as the report names it (image file, sample photo and crop, …)


@dataclass(frozen=True)
class Reference:
    """The PyTorch FP32 reference as it ran (parity.json's ``reference``)."""

    runtime: str
    label: str
    device: str
    accuracy_top1: float | None
    accuracy_top5: float | None


@dataclass(frozen=True)
class ParityReport:
    feeds: FeedSummary
    reference: Reference
    results: tuple[PairResult, ...]
    machine: dict[str, Any]
    created: float = field(default_factory=time.time)
    head: str = "classifier"  # an "embedding" was judged without top-1/top-5 or accuracy

    @property
    def passed(self) -> bool:
        return not self.failed

    @property
    def failed(self) -> list[PairResult]:
        return [r for r in self.results if r.status in FAILED]

    @property
    def ran(self) -> list[PairResult]:
        return [r for r in self.results if r.metrics is not None]

    def verdict_line(self) -> str:
        """The one summary of a parity run, as every report words it."""
        return (
            f"Parity: **{'PASS' if self.passed else 'FAIL'}** — {len(self.ran) - len(self.failed)} of {len(self.ran)} "
            "runtime × artifact pairs within thresholds"
        )

    def summary(self) -> str:
        """One line: how many pairs passed, and for INT8 both errors at their worst (the pipeline's step detail)."""
        line = f"{len(self.ran)} runtime × artifact pairs pass, {len(self.results) - len(self.ran)} not run here"
        int8 = [r for r in self.ran if r.fidelity is not None and r.quantization is not None]
        if int8:
            worst_file = min(r.quantization.cosine_min for r in int8 if r.quantization is not None)
            worst_fidelity = min(r.fidelity.cosine_min for r in int8 if r.fidelity is not None)
            line += (
                f"; INT8: file vs FP32 worst cos {worst_file:.4f}, runtime vs file worst cos {worst_fidelity:.4f} "
                f"({len(int8)} rows)"
            )
        return line

    def first_failure(self) -> str:
        """The first failing result and why, for the one-line error."""
        r = self.failed[0]
        cause = f" — {r.cause}" if r.cause else ""
        return f"{r.label}: {'; '.join(r.failures) or r.reason}{cause}"


REPORT = "parity.json"
# 2: INT8 results carry the file's error and the engine's (``quantization``, ``engine``); 3: every result carries
# each input's error (``inputs``, ``file_inputs``) and the inputs its verdict hangs on (``input_verdict``); a failing
# INT8 row the cause per failing input (``causes``); 4: the runtime's error against its file is ``fidelity`` (it was
# ``engine``, a word rn50 keeps for TensorRT engines): version 3 files are still read.
SCHEMA = "rn50.parity/4"
READ_SCHEMAS = ("rn50.parity/3", SCHEMA)


def to_dict(report: ParityReport) -> dict[str, Any]:
    return jsonable(report) | {"schema": SCHEMA, "passed": report.passed}


def from_dict(data: dict[str, Any]) -> ParityReport:
    if data.get("schema") not in READ_SCHEMAS:
        raise UsageError(
            f"not an {cmd('parity')} report (schema {data.get('schema')!r})",
            fix=f"pass a parity.json written by rn50 ({SCHEMA})",
        )
    results = []
    for r in data["results"]:
        r = dict(r)
        if "engine" in r:  # schema 3
            r["fidelity"], r["fidelity_thresholds"] = r.pop("engine"), r.pop("engine_thresholds", "")
        for key in ("metrics", "quantization", "fidelity"):
            if r.get(key) is not None:
                r[key] = OutputMetrics.from_dict(r[key])
        r["failures"] = tuple(r.get("failures", ()))
        for key in ("inputs", "file_inputs"):
            if r.get(key) is not None:
                r[key] = PerInput(tuple(r[key]["cosine"]), tuple(r[key]["max_abs"]))
        if r.get("input_verdict") is not None:
            v = r["input_verdict"]
            r["input_verdict"] = InputVerdict(
                v["total"], v["bound"], v["below"], v["few"], v["rest_cosine_mean"], tuple(tuple(w) for w in v["worst"])
            )
        r["causes"] = tuple(
            InputCause(**(c | {"outside": tuple(Excess(**e) for e in c["outside"])})) for c in r.get("causes", ())
        )
        if r.get("tried_fix") is not None:
            t = r["tried_fix"]
            r["tried_fix"] = TriedFix(
                tuple(t["keep_float"]), OutputMetrics.from_dict(t["metrics"]), tuple(t["failures"])
            )
        if r.get("divergence") is not None:
            d = r["divergence"]
            r["divergence"] = Divergence(**(d | {"layers": tuple(tuple(x) for x in d["layers"])}))
        results.append(PairResult(**r))
    feeds = dict(data["feeds"])
    feeds |= {"warnings": tuple(feeds.get("warnings", ())), "names": tuple(feeds.get("names", ()))}
    return ParityReport(
        FeedSummary(**feeds),
        Reference(**data["reference"]),
        tuple(results),
        data["machine"],
        data["created"],
        data.get("head", "classifier"),
    )


def load(path: Path) -> ParityReport:
    return from_dict(read_json(path, what="parity report", fix=f"pass a parity.json written by {cmd('parity')}"))

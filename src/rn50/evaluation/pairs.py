"""Which runtime × artifact pairs parity and profile run here, and which they do not, with the reason: read from the
work directory's manifest (every file checked against its sha256 first) and the runtime table."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from rn50.artifacts import WorkDir, sha256_file
from rn50.errors import UsageError
from rn50.results.parity_results import PairResult
from rn50.results.profile_results import Row, Settings
from rn50.runtimes.kinds import KINDS
from rn50.runtimes.model_io import engine_io
from rn50.runtimes.pt2_package import PROGRAM_KIND
from rn50.runtimes.qdq_form import QDQ_TENSORRT
from rn50.runtimes.registry import (
    TORCH,
    TORCH_ARTIFACT,
    Pair,
    fidelity_deviation,
    reads,
    result_precision,
    runtime_names,
    saturates,
    shown_name,
    unavailable_reason,
)
from rn50.words import cmd, opt

if TYPE_CHECKING:
    from rn50.runtimes.qdq_form import QdqForm


def onnx_precision(path: Path) -> str:
    """fp32, fp16 or int8, from rn50's metadata or, failing that, from the graph itself."""
    import onnx

    from rn50.onnx_graph import load_header

    model = load_header(path)
    meta = {p.key: p.value for p in model.metadata_props}
    if meta.get("rn50.precision") in ("fp32", "fp16", "int8"):
        return meta["rn50.precision"]
    if any(n.op_type in ("QuantizeLinear", "DequantizeLinear", "QLinearConv") for n in model.graph.node):
        return "int8"
    if any(i.data_type == onnx.TensorProto.FLOAT16 for i in model.graph.initializer):
        return "fp16"
    return "fp32"


def parity_pairs(
    workdir: WorkDir,
    *,
    runtimes: list[str] | None = None,
    artifacts: list[str] | None = None,
    extra_onnx: list[Path] | None = None,
) -> tuple[list[Pair], list[PairResult]]:
    """Targets to run, and those skipped with the reason (never silently dropped).

    Not run unless named with ``artifacts``: rn50's TensorRT Q/DQ file on a CPU runtime whose INT8 kernels saturate
    on its form on this CPU (it is made for TensorRT; measured, it fails its fidelity check). Every other pair runs,
    a file made for another CPU class included: that one fails with the cause and the fix."""
    from rn50.machine import cpu_info

    wanted = runtimes or list(runtime_names(reference=False, by_default=True))
    files: list[
        tuple[str, str, Path, str, Path | None, str]
    ] = []  # (name, precision, path, kind, source ONNX of an INT8 engine, sha256)
    known = workdir.by_name(artifacts)
    by_sha = {a.sha256: a for a in known.values() if a.kind in ("onnx", PROGRAM_KIND)}  # what INT8 files come from
    for art in known.values():
        if art.kind in KINDS and (not artifacts or art.name in artifacts):
            path = workdir.checked(art)  # a missing or changed file is refused, never measured
            for companion in KINDS[art.kind].companion_names(art.name):  # an IR is its .xml and its .bin
                if companion in known:
                    workdir.checked(known[companion])
            # An INT8 engine or IR is compared with the semantics of the Q/DQ ONNX it was made from; an INT8 package
            # with its quantized program's.
            parent = by_sha.get(art.parent_sha256 or "") if art.kind != "onnx" and art.precision == "int8" else None
            source = workdir.checked(parent) if parent else None  # read for the engine check: checked too
            files.append((art.name, art.precision, path, art.kind, source, art.sha256))
    for path in extra_onnx or []:  # their existence is checked by ParityOptions.check
        files.append((Path(path).name, onnx_precision(Path(path)), Path(path), "onnx", None, sha256_file(Path(path))))
    if not files:
        raise UsageError(
            f"nothing to compare in {workdir.root}", fix=f"run {cmd('export')} first, or pass {opt('onnx')} FILE"
        )
    pairs, skipped = [], []
    reasons = {runtime: unavailable_reason(runtime) for runtime in map(shown_name, wanted)}  # once per runtime
    cpu_class = str(cpu_info()["int8_class"])
    for name, precision, path, kind, source, sha in files:
        form = qdq_form(source or path) if precision == "int8" else None
        for runtime, reason in reasons.items():
            judged = result_precision(runtime, precision)
            if kind not in reads(runtime) or judged is None:
                continue
            if (
                not reason
                and form is not None
                and form.target == QDQ_TENSORRT
                and saturates(runtime, form, cpu_class)
                and name not in (artifacts or [])
            ):
                cause, fix = fidelity_deviation(runtime, form, cpu_class)
                anyway = f"{opt('runtime')} {runtime} {opt('artifact')} {name}"
                reason = f"not run unless named: {cause}; {fix} (to measure it anyway: {anyway})"
            if reason:
                skipped.append(PairResult(runtime, name, judged, str(path), "skipped", reason=reason, sha256=sha))
            else:
                pairs.append(Pair(runtime, judged, name, path, source, sha, form))
    for runtime, reason in reasons.items():  # compiled PyTorch: judged against the reference like a file's runtime
        if TORCH not in reads(runtime) or (artifacts and TORCH_ARTIFACT not in artifacts):
            continue
        if reason:
            skipped.append(PairResult(runtime, TORCH_ARTIFACT, "fp32", "", "skipped", reason=reason))
        else:
            pairs.append(Pair(runtime, "fp32", TORCH_ARTIFACT, None))
    return pairs, skipped


def qdq_form(path: Path) -> QdqForm | None:
    """The integer form of an INT8 ONNX file (None for an engine or IR without its source)."""

    from rn50.onnx_graph import load_header
    from rn50.runtimes.qdq_form import form_of

    return form_of(load_header(path)) if path.suffix == ".onnx" else None


def fixed_batches(runtime: str) -> bool:
    """Whether what ``runtime`` reads fixes the batches it takes (an engine's optimisation profile)."""
    return any(KINDS[k].batch_profile for k in reads(runtime) if k in KINDS)


def engine_batch_range(engine: Path) -> tuple[int, int]:
    """The batch sizes an engine's optimisation profile accepts, from its sidecar (no TensorRT needed)."""
    limits = engine_io(engine).batch_range
    if limits is None:  # every engine rn50 builds has one profile
        raise UsageError(f"{engine.name} has no optimisation profile", fix=f"rebuild it with {cmd('build-trt')}")
    return limits


def profile_pairs(
    workdir: WorkDir,
    settings: Settings,
    *,
    runtimes: list[str] | None = None,
    precisions: list[str] | None = None,
    artifacts: list[str] | None = None,
) -> tuple[list[Pair], list[Row]]:
    """Targets to measure and rows for those skipped, with the reason (never silently dropped, never zero).
    The names and settings were checked by ``ProfileOptions.check``."""
    wanted = runtimes or list(runtime_names(by_default=True))
    pairs: list[Pair] = []
    skipped: list[Row] = []
    if not artifacts or TORCH_ARTIFACT in artifacts:
        for runtime in (r for r in wanted if TORCH in reads(r)):
            if precisions and "fp32" not in precisions:
                continue
            reason = unavailable_reason(runtime)
            if reason:
                skipped.append(Row(runtime, TORCH_ARTIFACT, "fp32", "skipped", reason=reason))
            else:
                pairs.append(Pair(runtime, "fp32", TORCH_ARTIFACT, None))
    file_runtimes = [r for r in wanted if TORCH not in reads(r)]
    file_artifacts = [a for a in artifacts or [] if a != TORCH_ARTIFACT] or None
    if file_runtimes and (file_artifacts or not artifacts):
        found, not_here = parity_pairs(workdir, runtimes=file_runtimes, artifacts=file_artifacts)
        for t in found:
            if not precisions or t.precision in precisions:
                pairs.append(t)
        for s in not_here:
            if not precisions or s.precision in precisions:
                skipped.append(Row(s.runtime, s.artifact, s.precision, "skipped", reason=s.reason, sha256=s.sha256))
        # Batch sizes are checked against every engine's profile, runnable here or not: bad input is bad anywhere.
        engine_paths = [
            *(t.path for t in found if fixed_batches(t.runtime)),
            *(s.path for s in not_here if fixed_batches(s.runtime)),
        ]
        engines = {Path(p) for p in engine_paths if p is not None}
        for engine in sorted(engines):
            lo, hi = engine_batch_range(engine)
            outside = [b for b in settings.batches if not lo <= b <= hi]
            if outside:
                raise UsageError(
                    f"{opt('batch')} {','.join(map(str, outside))} is outside {engine.name}'s profile (batch "
                    f"{lo}..{hi})",
                    fix=f"profile batches within {lo}..{hi}, or rebuild with {cmd('build-trt')} "
                    f"{opt('min_batch')}/{opt('max_batch')}",
                )
    if not pairs and not skipped:
        raise UsageError(
            f"nothing to profile with these {opt('runtime')}/{opt('precision')}/{opt('artifact')} choices",
            fix=f"drop a filter, or run {cmd('export')} / quantize first",
        )
    return pairs, skipped

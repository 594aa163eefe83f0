"""A TensorRT engine from an ONNX file: build (or reuse) it, check an INT8 engine really is INT8, write the
engine, its sidecar and the manifest entry. TensorRT and its GPU are checked before anything else. Which file,
and its lint, are the ``build-trt`` command's business (``rn50.commands.build_trt``)."""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING

from rn50.artifacts import Artifact, WorkDir, atomic_write_bytes, sha256_file, versions
from rn50.errors import UsageError, uninterrupted
from rn50.runtimes.trt_plan import (
    BuildOptions,
    LayerReport,
    Sidecar,
    check_int8_engine,
    engine_filename,
    engine_key,
    profile_shapes,
    read_layer_report,
    sidecar_path,
)

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class BuildResult:
    engine: Path
    sidecar: Path
    reused: bool
    layers: LayerReport | None
    runtime: str  # "tensorrt", or a test double's label (trt_env.TEST_DOUBLES)


@dataclass(frozen=True)
class EngineSource:
    """The ONNX file an engine is built from: its name (an artifact's, or the file's), path and sha256, and for
    INT8 the layers it records as left out of INT8 (checked in the engine)."""

    name: str
    path: Path
    sha256: str
    excluded: frozenset[str] = frozenset()


def reusable(engine_path: Path, key: str) -> bool:
    """An engine built earlier with the same key whose file still matches its sidecar."""
    if not engine_path.is_file():
        return False
    try:
        sidecar = Sidecar.load(sidecar_path(engine_path))
    except UsageError as e:
        log.warning("rebuilding %s: %s", engine_path.name, e.problem)
        return False
    if sidecar.key != key or sha256_file(engine_path) != sidecar.engine_sha256:
        log.warning("rebuilding %s: the engine file or its sidecar changed since it was built", engine_path.name)
        return False
    return True


def build_engine(
    workdir: WorkDir, opts: BuildOptions, source: EngineSource, *, progress: Callable[[str], None] | None = None
) -> BuildResult:
    """The engine of ``source`` under ``opts`` in ``workdir`` (``require_tensorrt`` was called first)."""
    from rn50.runtimes.trt_engine import build
    from rn50.runtimes.trt_env import require_tensorrt, runtime_name, version

    opts.validate()
    gpu, cc = require_tensorrt()
    runtime, trt_version = runtime_name(), version()
    onnx_name, onnx_path, onnx_sha, excluded = source.name, source.path, source.sha256, source.excluded
    key = engine_key(onnx_sha, trt_version, cc, opts)
    engine_path = workdir.path(engine_filename(onnx_path.name.split(".")[0], opts, key))
    side_path = sidecar_path(engine_path)
    if reusable(engine_path, key):
        log.info("reusing %s (same ONNX, TensorRT, GPU and options)", engine_path)
        return BuildResult(engine_path, side_path, True, None, runtime)
    cache_path = workdir.path(f"timing-trt{trt_version}-sm{cc.replace('.', '')}.cache")
    built = build(
        onnx_path, opts, timing_cache=cache_path.read_bytes() if cache_path.is_file() else b"", progress=progress
    )
    layers = read_layer_report(built.inspector_json)
    if opts.precision == "int8":
        check_int8_engine(layers, excluded)  # nothing written for an engine that is not really INT8
    atomic_write_bytes(cache_path, built.timing_cache)
    with uninterrupted():  # the engine, its sidecar, its layer report and its manifest entry land together
        atomic_write_bytes(engine_path.with_name(engine_path.name + ".layers.json"), built.inspector_json.encode())
        atomic_write_bytes(engine_path, built.plan)
        lo, opt, hi = profile_shapes(opts)
        sidecar = Sidecar(
            trt_version,
            gpu,
            cc,
            onnx_sha,
            sha256_file(engine_path),
            key,
            asdict(opts),
            [{"input_min": list(lo), "input_opt": list(opt), "input_max": list(hi)}],
            built.io,
            asdict(layers),
            runtime=runtime,
        )
        sidecar.save(side_path)
        workdir.record(
            Artifact(
                f"engine-{opts.precision}",
                engine_path.name,
                "engine",
                opts.precision,
                sidecar.engine_sha256,
                onnx_sha,
                asdict(opts) | {"onnx": onnx_name},
                versions() | {"tensorrt": trt_version, "gpu": gpu, "compute_capability": cc},
                extra={"runtime": runtime},
            )
        )
    return BuildResult(engine_path, side_path, False, layers, runtime)

"""`rn50 build-trt`: pick the ONNX for the precision, lint it, build (or reuse) the engine, write the
engine, its sidecar and the manifest entry. Everything before the build runs without TensorRT."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

from rn50.artifacts import Artifact, WorkDir, atomic_write_bytes, sha256_file, versions
from rn50.errors import UsageError
from rn50.runtimes.trt_plan import (
    ONNX_FOR_PRECISION,
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

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class BuildResult:
    engine: Path
    sidecar: Path
    reused: bool
    layers: LayerReport | None


def source_onnx(workdir: WorkDir, precision: str) -> tuple[str, Path, str]:
    name = ONNX_FOR_PRECISION[precision]
    art = workdir.current(name)
    if art is None:
        hint = {"fp32": "rn50 export", "fp16": "rn50 quantize --fp16", "int8": "rn50 quantize --int8 --target tensorrt"}[precision]
        raise UsageError(f"no current {name} artifact in {workdir.root}", fix=f"run `{hint} --out {workdir.root}` first")
    path = workdir.path(art.path)
    if precision == "int8":
        import onnx

        from rn50.calibration import lint

        lint.check(onnx.load(str(path), load_external_data=False), "tensorrt")  # before the parser sees it
    return name, path, art.sha256


def build_trt(workdir: WorkDir, opts: BuildOptions, *, progress: Callable[[str], None] | None = None) -> BuildResult:
    from rn50.runtimes.trt_engine import build, gpu_identity
    from rn50.runtimes.trt_env import import_tensorrt

    opts.validate()
    onnx_name, onnx_path, onnx_sha = source_onnx(workdir, opts.precision)
    trt = import_tensorrt()
    gpu, cc = gpu_identity()
    key = engine_key(onnx_sha, trt.__version__, cc, opts)
    engine_path = workdir.path(engine_filename(onnx_path.name.split(".")[0], opts, key))
    side_path = sidecar_path(engine_path)
    if engine_path.is_file() and side_path.is_file():
        sidecar = Sidecar.load(side_path)
        if sidecar.key == key and sha256_file(engine_path) == sidecar.engine_sha256:
            log.info("reusing %s (same ONNX, TensorRT, GPU and options)", engine_path)
            return BuildResult(engine_path, side_path, True, None)
    cache_path = workdir.path(f"timing-trt{trt.__version__}-sm{cc.replace('.', '')}.cache")
    built = build(onnx_path, opts, timing_cache=cache_path.read_bytes() if cache_path.is_file() else b"", progress=progress)
    layers = read_layer_report(built.inspector_json)
    if opts.precision == "int8":
        check_int8_engine(layers)  # nothing written for an engine that is not really INT8
    atomic_write_bytes(cache_path, built.timing_cache)
    atomic_write_bytes(engine_path, built.plan)
    lo, opt, hi = profile_shapes(opts)
    sidecar = Sidecar(trt.__version__, gpu, cc, onnx_sha, sha256_file(engine_path), key, asdict(opts),
                      [{"input_min": list(lo), "input_opt": list(opt), "input_max": list(hi)}], built.io,
                      asdict(layers))  # fmt: skip
    sidecar.save(side_path)
    atomic_write_bytes(engine_path.with_name(engine_path.name + ".layers.json"), built.inspector_json.encode())
    workdir.record(Artifact(f"engine-{opts.precision}", engine_path.name, "engine", opts.precision, sidecar.engine_sha256,
                            onnx_sha, asdict(opts) | {"onnx": onnx_name}, versions() | {"tensorrt": trt.__version__, "gpu": gpu,
                            "compute_capability": cc}))  # fmt: skip
    return BuildResult(engine_path, side_path, False, layers)

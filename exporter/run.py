"""``rn50 export``: build the model, export, simplify, stamp metadata, write atomically, verify, record."""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING

import onnx

from rn50 import __version__
from rn50.artifacts import Artifact, WorkDir, atomic_path, sha256_file, versions
from rn50.exporter.config import ExportConfig, check_opset
from rn50.exporter.onnx_export import torch_to_onnx
from rn50.exporter.simplify import check, convert_opset, simplify
from rn50.exporter.verify import Verification, verify_onnx
from rn50.preprocess import DEFAULT
from rn50.weights import SEEDED, SEEDED_WEIGHTS, LoadedModel, load_model

if TYPE_CHECKING:
    from pathlib import Path

log = logging.getLogger(__name__)

FP32_NAME = "onnx-fp32"


@dataclass(frozen=True)
class ExportResult:
    path: Path
    sha256: str
    opset: int
    nodes: int
    verification: Verification | None


def model_record(loaded: LoadedModel, depth: int) -> dict[str, object]:
    return {"depth": depth, "weights": loaded.source, "weights_sha256": loaded.fingerprint}


def stamp_metadata(model: onnx.ModelProto, meta: dict[str, str]) -> None:
    # onnxsim records its own bookkeeping (removed node lists, ...) here; users read ours instead.
    kept = [p for p in model.metadata_props if not p.key.startswith("onnxsim.")]
    del model.metadata_props[:]
    model.metadata_props.extend(kept)
    existing = {p.key: p for p in model.metadata_props}
    for key, value in meta.items():
        prop = existing.get(key) or model.metadata_props.add()
        prop.key, prop.value = key, value


def read_metadata(model: onnx.ModelProto) -> dict[str, str]:
    return {p.key: p.value for p in model.metadata_props}


def build_onnx(loaded: LoadedModel, config: ExportConfig) -> onnx.ModelProto:
    proto = torch_to_onnx(loaded.model, opset=config.opset)
    proto = simplify(proto) if config.simplify else check(proto)
    proto = convert_opset(proto, config.opset)
    proto.producer_name, proto.producer_version = "rn50", __version__
    stamp_metadata(
        proto,
        {
            "rn50.version": __version__,
            "rn50.model": f"resnet{config.depth}",
            "rn50.weights": loaded.source,
            "rn50.weights_sha256": loaded.fingerprint,
            "rn50.preprocess": json.dumps(DEFAULT.describe()),
            "rn50.layout": "NCHW",
            "rn50.input": "input: float32 (batch, 3, 224, 224), RGB, ImageNet mean/std",
            "rn50.output": "logits: float32 (batch, classes)",
        },
    )
    return proto


def keep_seeded_weights(workdir: WorkDir, loaded: LoadedModel, depth: int) -> None:
    """Seeded weights are rebuilt from a seed, and another CPU's kernels may round the rebuild differently:
    the work directory keeps the exact weights its artifacts were made from (rn50 reads them back)."""
    import torch

    target = workdir.path(f"seeded-resnet{depth}.pt")
    with atomic_path(target) as tmp:
        torch.save(loaded.model.state_dict(), str(tmp))
    workdir.record(Artifact(SEEDED_WEIGHTS, target.name, "weights", "fp32", sha256_file(target), None, {"depth": depth},
                            versions(), extra={"fingerprint": loaded.fingerprint}))  # fmt: skip


def export(config: ExportConfig, workdir: WorkDir, *, verify: bool = True, loaded: LoadedModel | None = None) -> ExportResult:
    """Export to ``<workdir>/rn50.fp32.onnx``; the manifest marks it verified or not."""
    check_opset(config.opset)
    loaded = loaded or load_model(config.weights, depth=config.depth)
    record = model_record(loaded, config.depth)
    workdir.check_model(record)
    proto = build_onnx(loaded, config)
    target = workdir.path(f"resnet{config.depth}.fp32.onnx")
    with atomic_path(target) as tmp:
        onnx.save_model(proto, str(tmp))
    digest = sha256_file(target)
    result = verify_onnx(target, loaded.model) if verify else None
    if loaded.source == SEEDED:
        keep_seeded_weights(workdir, loaded, config.depth)
    workdir.record(
        Artifact(
            name=FP32_NAME,
            path=target.name,
            kind="onnx",
            precision="fp32",
            sha256=digest,
            parent_sha256=loaded.fingerprint,
            config=asdict(config),
            versions=versions(),
            verified=None if result is None else result.passed,
            extra={} if result is None else {"verify_max_abs": result.max_abs, "verify_cosine_min": result.cosine_min},
        ),
        model=record,
    )
    return ExportResult(target, digest, config.opset, len(proto.graph.node), result)

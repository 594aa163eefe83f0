"""The FP32 ONNX file of the work directory: build the model, export, simplify, stamp metadata, write atomically,
verify against PyTorch, record; and reading it back for the steps made from it."""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING

import onnx

from rn50 import __version__
from rn50.artifacts import Artifact, WorkDir, atomic_path, sha256_file, versions
from rn50.exporter.config import ExportConfig, check_opset
from rn50.exporter.simplify import check, convert_opset, simplify
from rn50.metrics import AUTO_HEAD, IMAGENET_CLASSES, for_head, resolve_head, thresholds_for
from rn50.onnx_graph import stamp_metadata
from rn50.preprocess import DEFAULT

if TYPE_CHECKING:
    from pathlib import Path

    from rn50.exporter.verify import Verification
    from rn50.weights import LoadedModel

log = logging.getLogger(__name__)

FP32_NAME = "onnx-fp32"


@dataclass(frozen=True)
class ExportResult:
    path: Path
    sha256: str
    opset: int
    nodes: int
    verification: Verification | None


def model_record(loaded: LoadedModel, depth: int, head: str = AUTO_HEAD) -> dict[str, object]:
    """The manifest's ``model``: what every artifact was made from, and what its output is (``head``)."""
    outputs = int(loaded.model.fc.out_features) if hasattr(loaded.model, "fc") else IMAGENET_CLASSES
    return {
        "depth": depth,
        "weights": loaded.source,
        "weights_sha256": loaded.fingerprint,
        "head": resolve_head(head, outputs),
        "outputs": outputs,
    }


def build_onnx(loaded: LoadedModel, config: ExportConfig) -> onnx.ModelProto:
    from rn50.exporter.onnx_export import torch_to_onnx  # torch: loaded when a model is exported, not before

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


def keep_weights(workdir: WorkDir, loaded: LoadedModel, depth: int) -> None:
    """The work directory keeps the exact weights its artifacts were made from, as a plain state dict that rn50
    reads back: seeded weights are rebuilt from a seed, and another CPU's kernels may round the rebuild
    differently; a user's checkpoint may move or change after the export."""
    import torch

    from rn50.weights import SEEDED, kept_weights_name

    seeded = loaded.source == SEEDED
    target = workdir.path(f"seeded-resnet{depth}.pt" if seeded else f"weights-resnet{depth}.pt")
    with atomic_path(target, then=lambda: workdir.record(kept)) as tmp:  # the file and its record land together
        torch.save(loaded.model.state_dict(), str(tmp))
        kept = Artifact(
            kept_weights_name(loaded.source),
            target.name,
            "weights",
            "fp32",
            sha256_file(tmp),
            None,
            {"depth": depth},
            versions(),
            extra={"fingerprint": loaded.fingerprint} | ({} if seeded else {"source": loaded.source}),
        )


def write_fp32_onnx(
    config: ExportConfig, workdir: WorkDir, *, verify: bool = True, loaded: LoadedModel | None = None
) -> ExportResult:
    """Export to ``<workdir>/resnet<depth>.fp32.onnx``; the manifest marks it verified or not."""
    from rn50.exporter.verify import verify_onnx
    from rn50.weights import load_model

    check_opset(config.opset)
    loaded = loaded or load_model(config.weights, depth=config.depth)
    record = model_record(loaded, config.depth, config.head)
    workdir.check_model(record)
    proto = build_onnx(loaded, config)
    target = workdir.path(f"resnet{config.depth}.fp32.onnx")
    # Verified before it lands; the file and the manifest entry that records it land together (an interrupt waits).
    with atomic_path(target, then=lambda: workdir.record(artifact, model=record)) as tmp:
        onnx.save_model(proto, str(tmp))
        digest = sha256_file(tmp)
        head = str(record["head"])
        limits = for_head(thresholds_for("fp32"), head)
        result = verify_onnx(tmp, loaded.model, thresholds=limits, head=head) if verify else None
        artifact = Artifact(
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
        )
    keep_weights(workdir, loaded, config.depth)  # after: a failed export leaves the manifest as it was
    return ExportResult(target, digest, config.opset, len(proto.graph.node), result)


def fp32_artifact(workdir: WorkDir) -> tuple[Artifact, Path]:
    """The work directory's FP32 ONNX file, unchanged and verified: what calibration and quantization start from."""
    from rn50.errors import UsageError

    art, path = workdir.require(FP32_NAME)
    if art.verified is False:
        raise UsageError(f"{art.path} failed export verification", fix="fix the export before quantizing it")
    return art, path

"""OpenVINO IR (.xml + .bin) from an ONNX artifact, by OpenVINO's own converter, verified against its source.

``openvino.save_model`` compresses weights to FP16 by default: rn50 turns that off, so an IR holds the
same weights as the ONNX file it was made from. The IR is then run on OpenVINO (f32) next to its ONNX
source on held-apart crops; the manifest records the comparison and marks the IR verified or not.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from rn50.artifacts import PARTIAL, Artifact, sha256_file, versions
from rn50.errors import check_interrupt, uninterrupted
from rn50.metrics import OutputMetrics, Thresholds, compare

if TYPE_CHECKING:
    import numpy as np

    from rn50.artifacts import WorkDir

# The conversion changes no arithmetic: the IR must give the ONNX file's own outputs on OpenVINO.
IR_THRESHOLDS = Thresholds(min_cosine=0.999999, max_abs=1e-4)
VERIFY_CROPS = 8


def ir_name(onnx_name: str) -> str:
    """onnx-fp32 → ir-fp32, onnx-int8-tensorrt → ir-int8-tensorrt."""
    return "ir-" + onnx_name.removeprefix("onnx-")


def weights_name(name: str) -> str:
    return f"{name}-weights"


@dataclass(frozen=True)
class IrResult:
    name: str
    xml: Path
    bin: Path
    metrics: OutputMetrics
    failures: tuple[str, ...]

    @property
    def verified(self) -> bool:
        return not self.failures


def _convert(onnx_path: Path, xml: Path) -> None:
    """OpenVINO's ONNX frontend reads the file; ``save_model`` writes the IR, weights kept as they are.

    Not ``openvino.convert_model``: its extra graph transformations changed the numbers of the
    onnxruntime-cpu Q/DQ file (measured, OpenVINO 2026.4, 8 crops: max abs 0.0129 on the logits, worst
    cosine 0.99932 against the ONNX file on OpenVINO), while the frontend's IR gives exactly the same
    outputs (max abs 0) for every rn50 file."""
    from rn50.runtimes.openvino_runner import import_openvino, read_model

    ov = import_openvino()
    model = read_model(ov.Core(), onnx_path)  # a file OpenVINO cannot convert: one line naming the node
    ov.save_model(model, str(xml), compress_to_fp16=False)


def _outputs(path: Path, crops: np.ndarray) -> np.ndarray:
    from rn50.runtimes.openvino_runner import OpenVinoRunner

    with OpenVinoRunner(path, precision="f32") as runner:
        return runner.infer({"input": crops})["logits"]


def write_ir(workdir: WorkDir, onnx_artifact: str) -> IrResult:
    """Convert the named ONNX artifact; write ``<stem>.xml``/``.bin`` atomically (both or neither); record both."""
    from rn50.samples import sample_crops

    art, onnx_path = workdir.require(onnx_artifact)
    name = ir_name(onnx_artifact)
    xml, weights = onnx_path.with_suffix(".xml"), onnx_path.with_suffix(".bin")
    staging = Path(tempfile.mkdtemp(prefix=".ir-", suffix=PARTIAL, dir=workdir.root))
    try:
        _convert(onnx_path, staging / xml.name)
        crops = sample_crops(VERIFY_CROPS, split="evaluation")
        metrics = compare(_outputs(staging / xml.name, crops), _outputs(onnx_path, crops))
        failures = tuple(IR_THRESHOLDS.failures(metrics))
        xml_sha, bin_sha = sha256_file(staging / xml.name), sha256_file(staging / weights.name)
        config = {"source": art.name, "converter": "openvino.convert_model", "compress_to_fp16": False}
        check = {"verify_max_abs": metrics.max_abs, "verify_cosine_min": metrics.cosine_min, "weights": weights.name}
        check_interrupt()
        with uninterrupted():  # both files and their manifest entries land together
            os.replace(staging / weights.name, weights)  # the weights first: an .xml is never left without its .bin
            os.replace(staging / xml.name, xml)
            workdir.record(
                Artifact(
                    weights_name(name),
                    weights.name,
                    "ir-weights",
                    art.precision,
                    bin_sha,
                    art.sha256,
                    config,
                    versions(),
                )
            )
            workdir.record(
                Artifact(
                    name,
                    xml.name,
                    "ir",
                    art.precision,
                    xml_sha,
                    art.sha256,
                    config,
                    versions(),
                    verified=not failures,
                    extra=check,
                )
            )
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return IrResult(name, xml, weights, metrics, failures)

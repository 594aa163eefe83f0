"""``rn50 export``: the FP32 ONNX file, verified against PyTorch (the work itself is in ``rn50.exporter``)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from rn50.errors import CheckFailed
from rn50.exporter.config import ExportConfig, check_opset

if TYPE_CHECKING:
    from rn50.artifacts import WorkDir
    from rn50.exporter.onnx_file import ExportResult
    from rn50.exporter.openvino_ir import IrResult
    from rn50.weights import LoadedModel


@dataclass(frozen=True)
class ExportOptions:
    config: ExportConfig = ExportConfig()
    verify: bool = True
    ir: bool = False  # also OpenVINO IR of the FP32 model

    def check(self) -> None:
        """Before the work directory is created or the model built."""
        from rn50.weights import check_source

        check_opset(self.config.opset)
        check_source(self.config.weights)
        if self.ir:  # --ir needs OpenVINO: refused before any work where it is missing
            from rn50.runtimes.openvino_runner import import_openvino

            import_openvino()


def export(options: ExportOptions, workdir: WorkDir, *, loaded: LoadedModel | None = None) -> ExportResult:
    from rn50.exporter.onnx_file import write_fp32_onnx

    options.check()
    return write_fp32_onnx(options.config, workdir, verify=options.verify, loaded=loaded)


def export_ir(workdir: WorkDir, onnx_artifacts: list[str]) -> list[IrResult]:
    """OpenVINO IR of each named ONNX artifact, verified against it."""
    from rn50.exporter.openvino_ir import write_ir

    return [write_ir(workdir, name) for name in onnx_artifacts]


def unverified_ir(results: list[IrResult]) -> CheckFailed | None:
    bad = [r for r in results if not r.verified]
    if not bad:
        return None
    return CheckFailed(f"{bad[0].xml.name} does not match its ONNX source on OpenVINO: {'; '.join(bad[0].failures)}",
                       fix="the manifest marks it unverified; report it with --verbose")  # fmt: skip


def unverified(result: ExportResult) -> CheckFailed | None:
    """The one error an export that does not match PyTorch ends with (the CLI's and the pipeline's)."""
    v = result.verification
    if v is None or v.passed:
        return None
    return CheckFailed(f"{result.path.name} does not match the PyTorch model: {v.failures()[0]}",
                       fix="the manifest marks it unverified; report it with --verbose")  # fmt: skip

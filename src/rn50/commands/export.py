"""``rn50 export``: the FP32 ONNX file, verified against PyTorch, and with ``--ir`` its OpenVINO IR (the work itself
is in ``rn50.exporter``)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from rn50.commands.flags import flag
from rn50.commands.outcome import QUIET, Ui
from rn50.errors import CheckFailed
from rn50.exporter.config import ExportConfig, check_opset
from rn50.metrics import fmt
from rn50.reports.render import Section
from rn50.words import opt

if TYPE_CHECKING:
    from rn50.artifacts import WorkDir
    from rn50.exporter.onnx_file import ExportResult
    from rn50.exporter.openvino_ir import IrResult
    from rn50.exporter.pt2 import Pt2Result
    from rn50.feeds import FeedSet
    from rn50.metrics import Thresholds
    from rn50.weights import LoadedModel


def ir_flag() -> Any:
    """--ir, for every command that writes ONNX files (export, quantize)."""
    return flag(
        "--ir", default=False, help="Also write OpenVINO IR (.xml/.bin) of each file, verified against it on OpenVINO."
    )


@dataclass(frozen=True)
class ExportOptions:
    config: ExportConfig = field(default_factory=ExportConfig)
    verify: bool = flag(
        "--verify/--no-verify", default=True, help="Check the file on ONNX Runtime CPU against PyTorch."
    )
    ir: bool = ir_flag()
    pt2: bool = flag(
        "--pt2",
        default=False,
        help="Also write an AOTInductor package (.pt2) of the model compiled for this CPU, verified against PyTorch.",
    )

    def check(self) -> None:
        """Before the work directory is created or the model built."""
        from rn50.weights import check_source

        check_opset(self.config.opset)
        check_source(self.config.weights)
        if self.ir:  # --ir needs OpenVINO: refused before any work where it is missing
            from rn50.runtimes.openvino_runner import import_openvino

            import_openvino()


def ir_sections(irs: list[IrResult]) -> list[Section]:
    lines = [
        f"wrote {r.xml} + {r.bin.name} (OpenVINO IR; vs its ONNX on OpenVINO: max abs {r.metrics.max_abs:.3g}, cos "
        "worst "
        f"{r.metrics.cosine_min:.8f}) {'pass' if r.verified else 'FAIL: ' + '; '.join(r.failures)}"
        for r in irs
    ]
    return [Section("", paragraphs=lines)] if lines else []


def pt2_dict(r: Pt2Result) -> dict[str, Any]:
    return {
        "path": r.path,
        "verified": r.verified,
        "verified_against": "pytorch" if r.program is None else "program",
        "max_abs": r.metrics.max_abs,
        "cosine_min": r.metrics.cosine_min,
        **asdict(r.sidecar),
        **({} if r.program is None else {"program": r.program}),
        **({} if r.quantization is None else {"program_vs_fp32": r.quantization.to_dict()}),
    }


def pt2_sections(r: Pt2Result | None) -> list[Section]:
    """What an AOTInductor package is, what it cost to make, and how it was checked: one paragraph."""
    if r is None:
        return []
    side = r.sidecar
    quantized = ""
    if r.program is not None and r.quantization is not None:
        q = r.quantization
        floats = f"left in float: {', '.join(r.float_modules)}" if r.float_modules else "every layer INT8"
        budget = ""
        if r.budget_failures is not None:
            budget = "; budget met" if not r.budget_failures else f"; budget NOT met: {'; '.join(r.budget_failures)}"
        quantized = (
            f"; PT2E-quantized in {side.quantize_s or 0:.1f} s ({floats}), its program {r.program.name} vs PyTorch "
            f"FP32: cos mean {q.cosine_mean:.6f}, worst {q.cosine_min:.6f}{budget}"
        )
    return [
        Section(
            "",
            paragraphs=[
                f"wrote {r.path} ({side.precision.upper()} AOTInductor package for this CPU: torch {side.torch}, "
                f"{side.isa or 'no vector'} ISA; compiled in {side.compile_s:.1f} s, process peak memory "
                f"{side.peak_rss_mb:.0f} MB{quantized}; vs {r.against}: max abs {r.metrics.max_abs:.3g}, cos worst "
                f"{r.metrics.cosine_min:.8f}) " + ("pass" if r.verified else "FAIL: " + "; ".join(r.failures))
            ],
        )
    ]


def unverified_pt2(r: Pt2Result | None) -> CheckFailed | None:
    """A package that does not compute what it should, or an INT8 one whose program misses its budget."""
    if r is None:
        return None
    if not r.verified:
        return CheckFailed(
            f"{r.path.name} does not match {r.against}: {'; '.join(r.failures)}",
            fix="the manifest marks it unverified; report it with --verbose",
        )
    if r.budget_failures:
        return CheckFailed(
            f"{r.path.name} misses the budget with {', '.join(r.float_modules) or 'no layer'} in float (the layers the "
            f"budget search left out of the Q/DQ files, mapped to PyTorch modules): {'; '.join(r.budget_failures)}",
            fix=f"leave more layers out ({opt('keep_float')}), or loosen {opt('budget')}",
        )
    return None


def write_int8_package(
    workdir: WorkDir,
    feeds: FeedSet,
    *,
    classifier: str | None = None,
    leave_out: tuple[str, ...] = (),
    budget: Thresholds | None = None,
) -> tuple[Pt2Result, tuple[str, ...]]:
    """PyTorch's INT8 path: the work directory's model PT2E-quantized on ``feeds`` and compiled for this CPU, its
    classifier as ``classifier`` says (None: rn50's default, float, as its ONNX files), and ``leave_out`` (layers by
    PyTorch module or ONNX node: --keep-float, a budget search's choice) left out of INT8; with ``budget``, judged
    on the budget search's crops. Returns the result and the names of ``leave_out`` that name no layer PT2E quantizes
    (a residual Add: PT2E quantizes an Add with its convolution)."""
    from rn50.calibration.budget import BUDGET_CROPS, CLASSIFIER_PRECISIONS
    from rn50.calibration.quantized import module_names_of
    from rn50.exporter.onnx_file import fp32_artifact
    from rn50.exporter.pt2 import CALIBRATION_BATCH, classifier_module, layer_modules, write_pt2_int8
    from rn50.onnx_graph import load_header
    from rn50.weights import workdir_model

    art, path = fp32_artifact(workdir)
    model = workdir_model(workdir)
    layers = set(layer_modules(model))
    by_node = module_names_of(workdir, load_header(path)) if set(leave_out) - layers else {}
    head = classifier_module(model) if (classifier or CLASSIFIER_PRECISIONS[0]) == "float" else None
    wanted = [head] if head else []
    wanted += [by_node.get(name, name) for name in leave_out]
    floats = tuple(dict.fromkeys(n for n in wanted if n in layers))
    result = write_pt2_int8(
        workdir,
        model,
        feeds.batches(CALIBRATION_BATCH),
        stem=path.name.removesuffix(".fp32.onnx"),
        parent_sha256=art.parent_sha256,
        images=feeds.description,
        float_modules=floats,
        budget=budget,
        budget_crops=BUDGET_CROPS,
    )
    return result, tuple(n for n in leave_out if by_node.get(n, n) not in layers)


def ir_dict(r: IrResult) -> dict[str, Any]:
    return {
        "name": r.name,
        "xml": r.xml,
        "bin": r.bin,
        "verified": r.verified,
        "max_abs": r.metrics.max_abs,
        "cosine_min": r.metrics.cosine_min,
    }


@dataclass(frozen=True)
class ExportOutcome:
    result: ExportResult
    irs: list[IrResult] = field(default_factory=list)
    pt2: Pt2Result | None = None

    @property
    def error(self) -> CheckFailed | None:
        return unverified(self.result) or unverified_ir(self.irs) or unverified_pt2(self.pt2)

    def sections(self) -> list[Section]:
        r, v = self.result, self.result.verification
        parts = [Section("", paragraphs=[f"wrote {r.path} (opset {r.opset}, {r.nodes} nodes, sha256 {r.sha256[:12]})"])]
        if v is not None:
            parts.append(
                Section(
                    f"verification: ONNX Runtime CPU vs PyTorch FP32 ({v.thresholds.describe()})",
                    "verification",
                    header=["batch", "max abs", "cosine (worst)", "top-1", "verdict"],
                    rows=[
                        [
                            str(c.batch),
                            f"{c.metrics.max_abs:.3g}",
                            f"{c.metrics.cosine_min:.8f}",
                            fmt(c.metrics.top1_agreement, ".3f"),
                            "pass" if not c.failures else "FAIL: " + "; ".join(c.failures),
                        ]
                        for c in v.checks
                    ],
                )
            )
        return parts + pt2_sections(self.pt2) + ir_sections(self.irs)

    def to_dict(self) -> dict[str, Any]:
        r, v = self.result, self.result.verification
        return {
            "path": r.path,
            "sha256": r.sha256,
            "opset": r.opset,
            "nodes": r.nodes,
            "verified": None if v is None else v.passed,
            "verification": None
            if v is None
            else [{"batch": c.batch, **c.metrics.to_dict(), "failures": c.failures} for c in v.checks],
            "ir": [ir_dict(i) for i in self.irs],
            "pt2": None if self.pt2 is None else pt2_dict(self.pt2),
        }


def export(
    options: ExportOptions, workdir: WorkDir, ui: Ui = QUIET, *, loaded: LoadedModel | None = None
) -> ExportOutcome:
    """Export to a simplified ONNX file with a dynamic batch, and verify it against PyTorch."""
    from rn50.exporter.onnx_file import FP32_NAME, write_fp32_onnx

    ui.status("exporting (build, torch.export, onnxsim, verify)…")
    result = write_fp32_onnx(options.config, workdir, verify=options.verify, loaded=loaded)
    irs = []
    if options.ir and unverified(result) is None:
        ui.status("writing OpenVINO IR…")
        irs = export_ir(workdir, [FP32_NAME])
    pt2 = None
    if options.pt2 and unverified(result) is None:
        from rn50.exporter.pt2 import write_pt2
        from rn50.weights import workdir_model

        ui.status("compiling the AOTInductor package (torch.export, AOTInductor, verify)…")
        art = workdir.artifact(FP32_NAME)
        pt2 = write_pt2(
            workdir,
            workdir_model(workdir),
            stem=result.path.name.removesuffix(".fp32.onnx"),
            parent_sha256=art.parent_sha256 if art is not None else None,
        )
    return ExportOutcome(result, irs, pt2)


def export_ir(workdir: WorkDir, onnx_artifacts: list[str]) -> list[IrResult]:
    """OpenVINO IR of each named ONNX artifact, verified against it."""
    from rn50.exporter.openvino_ir import write_ir

    return [write_ir(workdir, name) for name in onnx_artifacts]


def unverified_ir(results: list[IrResult]) -> CheckFailed | None:
    bad = [r for r in results if not r.verified]
    if not bad:
        return None
    return CheckFailed(
        f"{bad[0].xml.name} does not match its ONNX source on OpenVINO: {'; '.join(bad[0].failures)}",
        fix="the manifest marks it unverified; report it with --verbose",
    )


def unverified(result: ExportResult) -> CheckFailed | None:
    """The one error an export that does not match PyTorch ends with (the CLI's and the pipeline's)."""
    v = result.verification
    if v is None or v.passed:
        return None
    return CheckFailed(
        f"{result.path.name} does not match the PyTorch model: {v.failures()[0]}",
        fix="the manifest marks it unverified; report it with --verbose",
    )

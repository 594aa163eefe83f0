"""``rn50 doctor``: what this machine can run, each line ok / missing / broken with the fix.

"missing" is something optional that is absent (a CPU-only machine has no TensorRT: that is fine);
"broken" is something present that does not work (a GPU provider that cannot load its libraries).
"""

from __future__ import annotations

import importlib.util
import platform
import sys
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    from rn50.artifacts import WorkDir

from rn50.artifacts import dist_version
from rn50.commands.outcome import QUIET, Ui
from rn50.errors import CheckFailed
from rn50.machine import AVX2, cpu_info, gpu_info
from rn50.reports.render import Section
from rn50.runtimes.pt2_package import TORCHAO_INSTALL
from rn50.words import cmd

Status = Literal["ok", "missing", "broken"]
OK: Status = "ok"
MISSING: Status = "missing"
BROKEN: Status = "broken"


@dataclass(frozen=True)
class Check:
    name: str
    status: Status
    detail: str
    fix: str | None = None


def check_python() -> Check:
    return Check("python", OK, f"{platform.python_version()} ({sys.executable})")


def check_package(name: str, purpose: str, fix: str, *, required: bool = True) -> Check:
    version = dist_version(name)
    if version is None:
        return Check(name, BROKEN if required else MISSING, f"not installed ({purpose})", fix)
    return Check(name, OK, version)


def check_torch() -> Check:
    version = dist_version("torch")
    if version is None:
        return Check(
            "torch",
            BROKEN,
            "not installed (the model and the reference)",
            "pip install torch (CPU or CUDA build), then rn50",
        )
    import torch

    build = f"CUDA {torch.version.cuda} build" if torch.version.cuda else "CPU build"
    return Check("torch", OK, f"{version} ({build})")


def tiny_onnx() -> bytes:
    """A one-node model (y = x + x) to prove a provider really loads."""
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [helper.make_node("Add", ["x", "x"], ["y"])],
        "probe",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])],
    )
    return bytes(
        helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8).SerializeToString()
    )


def ort_distributions() -> dict[str, tuple[str, Path]]:
    """The installed ONNX Runtime packages: version and the sys.path folder each is installed in."""
    found: dict[str, tuple[str, Path]] = {}
    for package in ("onnxruntime", "onnxruntime-gpu"):
        for dist in metadata.distributions(name=package):
            found.setdefault(package, (dist.version, Path(str(dist.locate_file(""))).resolve()))
    return found


def check_onnxruntime() -> list[Check]:
    present = ort_distributions()
    if not present:
        return [
            Check("onnxruntime", BROKEN, "not installed", "pip install onnxruntime (or onnxruntime-gpu on a CUDA host)")
        ]
    note = ""
    if len(present) > 1:
        # Both in one folder: their files overwrote each other. In two folders, the one first on sys.path is
        # imported whole and the other is never seen (e.g. onnxruntime-gpu installed with --target on PYTHONPATH).
        spec = importlib.util.find_spec("onnxruntime")
        used = [
            p
            for p, (_, where) in present.items()
            if spec and spec.origin and Path(spec.origin).resolve().is_relative_to(where)
        ]
        if len({where for _, where in present.values()}) == 1 or len(used) != 1:
            return [
                Check(
                    "onnxruntime",
                    BROKEN,
                    f"both {' and '.join(f'{p} {v}' for p, (v, _) in present.items())} are installed: they share "
                    "one module",
                    "pip uninstall -y onnxruntime onnxruntime-gpu, then install one of them",
                )
            ]
        ((hidden, (hidden_version, hidden_at)),) = ((p, d) for p, d in present.items() if p != used[0])
        note = f" (imported from {present[used[0]][1]}; {hidden} {hidden_version} in {hidden_at} is shadowed by it)"
        present = {used[0]: present[used[0]]}
    ((package, (version, _)),) = present.items()
    if importlib.util.find_spec("torch") is not None:
        import torch  # noqa: F401 - loads the CUDA/cuDNN libraries onnxruntime-gpu looks for

    import onnxruntime as ort

    providers = ort.get_available_providers()
    checks = [Check("onnxruntime", OK, f"{package} {version}{note}; providers: {', '.join(providers)}")]
    from rn50.runtimes.ort_runner import GPU_LIBRARIES, PROVIDERS, missing_libraries, tensorrt_libraries_missing

    for short, label in (("cuda", "cuda"), ("trt", "tensorrt")):
        provider, name = PROVIDERS[short], f"onnxruntime {label} provider"
        if provider not in providers:
            checks.append(
                Check(
                    name,
                    MISSING,
                    f"not in this build ({package})",
                    "pip install 'rn50[gpu]' (onnxruntime-gpu) on a CUDA host",
                )
            )
            continue
        if short == "trt" and (missing := tensorrt_libraries_missing()):
            # Optional: without TensorRT's own libraries the provider cannot load, and the CUDA provider still serves.
            checks.append(
                Check(
                    name,
                    MISSING,
                    missing,
                    "install TensorRT 10 (NVIDIA's tensorrt wheels or tarball) for the onnxruntime-trt runtime",
                )
            )
            continue
        try:
            session = ort.InferenceSession(tiny_onnx(), providers=[provider, "CPUExecutionProvider"])
            got = session.get_providers()
        except Exception as e:  # noqa: BLE001 - any load failure is the finding
            got, error = [], str(e).splitlines()[0]
        else:
            error = ""
        if provider in got:
            checks.append(Check(name, OK, "loads and runs a probe model"))
        else:
            absent = missing_libraries(GPU_LIBRARIES[short])
            why = f"cannot load {', '.join(absent)}" if absent else error or "ONNX Runtime fell back to the CPU"
            checks.append(
                Check(
                    name,
                    BROKEN,
                    f"listed but does not load: {why}",
                    "install the CUDA/cuDNN (or TensorRT) libraries this onnxruntime-gpu was built for",
                )
            )
    return checks


def check_tensorrt() -> Check:
    from rn50.errors import EnvironmentProblem
    from rn50.runtimes.trt_env import double_on_path, import_tensorrt

    try:
        trt = import_tensorrt()
    except EnvironmentProblem as e:
        return Check("tensorrt", MISSING, e.problem, e.fix)
    double = double_on_path()
    if double is not None:
        return Check("tensorrt", MISSING, *double)
    return Check("tensorrt", OK, str(trt.__version__))


def check_openvino() -> Check:
    """The package, its CPU plugin, and what the plugin says this CPU can do (bf16 decides the bf16 row)."""
    version = dist_version("openvino")
    if version is None:
        return Check("openvino", MISSING, "not installed (the openvino-cpu runtimes)", "pip install 'rn50[openvino]'")
    try:
        import openvino

        core = openvino.Core()
        name = core.get_property("CPU", "FULL_DEVICE_NAME")
        caps = [str(c) for c in core.get_property("CPU", "OPTIMIZATION_CAPABILITIES")]
    except Exception as e:  # a broken install raises from its C++ core
        return Check(
            "openvino",
            BROKEN,
            f"{version} installed but its CPU plugin does not load ({str(e).splitlines()[0][:160]})",
            "reinstall it: pip install --force-reinstall openvino",
        )
    bf16 = "bf16: yes (openvino-cpu-bf16 runs)" if "BF16" in caps else "bf16: no (openvino-cpu-bf16 is skipped)"
    int8 = "INT8: yes" if "INT8" in caps else "INT8: no"
    return Check("openvino", OK, f"{version}; CPU plugin: {name}; {bf16}; {int8}; capabilities {', '.join(caps)}")


def check_triton() -> Check:
    """Triton Inference Server (PyTriton's) for rn50 serve: installed, with a Python backend for this Python."""
    from rn50.errors import EnvironmentProblem
    from rn50.serving.server import check_installed, libpython

    version, client = dist_version("nvidia-pytriton"), dist_version("tritonclient")
    if version is None or client is None:
        from rn50.serving.triton_config import TRITON_EXTRA

        return Check(
            "triton",
            MISSING,
            "nvidia-pytriton/tritonclient not installed (rn50 serve, loadtest, triton-repo)",
            TRITON_EXTRA,
        )
    try:
        check_installed()
    except EnvironmentProblem as e:
        return Check("triton", BROKEN, e.problem, e.fix)
    return Check(
        "triton",
        OK,
        f"nvidia-pytriton {version} (Triton Inference Server), tritonclient {client}; Python backend loads "
        f"{libpython()}",
    )


def check_gpu() -> Check:
    gpus = gpu_info()
    torch_sees = False
    if importlib.util.find_spec("torch") is not None:
        import torch

        torch_sees = torch.cuda.is_available()
    if not gpus and not torch_sees:
        return Check(
            "gpu",
            MISSING,
            "no NVIDIA GPU (no nvidia-smi, torch sees no CUDA device)",
            "GPU runtimes need an NVIDIA GPU and driver; every CPU path works without",
        )
    if gpus and not torch_sees:
        return Check(
            "gpu",
            BROKEN,
            f"{gpus[0]['name']} present but torch cannot use it",
            "install a CUDA build of torch matching the driver (pip install torch --index-url …/cu130)",
        )
    if gpus:
        g = gpus[0]
        return Check(
            "gpu",
            OK,
            f"{g['name']}, compute capability {g['compute_cap']}, driver {g['driver_version']}, SM clock "
            f"{g['clocks.sm']}",
        )
    import torch

    cap = torch.cuda.get_device_capability()
    return Check(
        "gpu", OK, f"{torch.cuda.get_device_name()}, compute capability {cap[0]}.{cap[1]} (nvidia-smi not found)"
    )


def check_cpu() -> Check:
    """The CPU, and what its INT8 class means for accuracy as well as speed."""
    info = cpu_info()
    features = info["int8_features"]
    detail = (
        f"{info['model']}, {info['usable_cores']} usable cores; INT8 features: {', '.join(features) or 'none'}; "
        f"INT8 class {info['int8_class']}"
    )
    if info["int8_class"] == AVX2:
        return Check(
            "cpu",
            MISSING,
            detail
            + (
                " (no VNNI/AMX: u8×s8 pairs are summed in a saturating 16-bit intermediate, so ONNX Runtime "
                "and OpenVINO compute INT8 files with full-range weights other than they say here; "
                "rn50 quantize --int8 makes the avx2 form, 7-bit weights, which they compute faithfully, "
                "and parity checks every INT8 runtime against its file)"
            ),
            "nothing to do for correctness; a CPU with VNNI or AMX runs full-range INT8 files faithfully and faster",
        )
    return Check(
        "cpu",
        OK,
        detail
        + (
            " (INT8 dot products summed in 32 bits: full-range INT8 files run as written; rn50 quantize "
            "--int8 makes the vnni form here — pass --cpu avx2 for a file every x86 CPU computes faithfully)"
        ),
    )


def check_runtimes() -> list[Check]:
    """Every runtime of the runtime table: whether it can run here, and why not."""
    from rn50.runtimes.registry import RUNTIME_TABLE

    checks = []
    for spec in RUNTIME_TABLE.values():
        reason = spec.unavailable()
        checks.append(
            Check(
                f"runtime {spec.name}",
                MISSING if reason else OK,
                reason or spec.summary,
                "install what it needs (said above), or leave it: every other runtime runs without it"
                if reason
                else None,
            )
        )
    return checks


def run_checks() -> list[Check]:
    checks = [check_python(), check_torch()]
    checks.append(check_package("onnx", "ONNX IR and checker", "pip install onnx"))
    checks.append(check_package("onnxscript", "the dynamo exporter", "pip install onnxscript"))
    checks.append(check_package("onnxsim", "simplifying before quantization", "pip install onnxsim"))
    checks += check_onnxruntime()
    checks += [check_openvino(), check_tensorrt(), check_triton(), check_gpu(), check_cpu()]
    checks.append(
        check_package(
            "torchao", f"PyTorch's INT8 path, {cmd('quantize', int8=True, pt2=True)}", TORCHAO_INSTALL, required=False
        )
    )
    checks.append(
        check_package("matplotlib", "charts in parity/profile reports", "pip install matplotlib", required=True)
    )
    return checks + check_runtimes()


@dataclass(frozen=True)
class DoctorOutcome:
    checks: list[Check]

    @property
    def error(self) -> CheckFailed | None:
        broken = [c for c in self.checks if c.status == BROKEN]
        if not broken:
            return None
        return CheckFailed(f"{len(broken)} broken: {', '.join(c.name for c in broken)}", fix=broken[0].fix)

    def sections(self) -> list[Section]:
        """One line a check: its status, what, the detail and, where it is not ok, the fix."""
        return [
            Section(
                "",
                paragraphs=[
                    f"{c.status:>7}  {c.name}: {c.detail}" + (f" — fix: {c.fix}" if c.fix and c.status != OK else "")
                    for c in self.checks
                ],
            )
        ]

    def to_dict(self) -> dict[str, object]:
        """``verdict`` "ok" or "broken" (exit 1), the broken and missing checks' names, and every check."""
        broken = [c.name for c in self.checks if c.status == BROKEN]
        return {
            "verdict": BROKEN if broken else OK,
            "broken": broken,
            "missing": [c.name for c in self.checks if c.status == MISSING],
            "checks": self.checks,
        }


def doctor(_options: None = None, _workdir: WorkDir | None = None, _ui: Ui = QUIET) -> DoctorOutcome:
    """What this machine can run: Python, torch, ONNX, ONNX Runtime providers, OpenVINO, TensorRT, Triton, the GPU, the
    CPU's INT8 class, and every runtime."""
    return DoctorOutcome(run_checks())

"""Option groups shared by several commands, with their defaults, declared once.

The CLI's flags take their defaults from these classes, the pipeline builds the same objects, and each
command checks its options (``check()``) before any model is built or any work directory is touched.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rn50.calibration.ranges import AUTO_METHOD, DEFAULT_METHOD, METHODS, method_options
from rn50.commands.flags import flag, option
from rn50.errors import UsageError
from rn50.feeds import DEFAULT_SAMPLE_COUNT

if TYPE_CHECKING:
    from collections.abc import Callable

    from rn50.feeds import FeedSet
    from rn50.metrics import Thresholds

CALIBRATION_COUNT = 64  # sample crops calibrated on when no --images are given
CALIBRATION_BATCH = 16
PARITY_COUNT = DEFAULT_SAMPLE_COUNT  # held-apart sample crops parity compares on
PARITY_BATCH = 8


def check_batch(batch: int, name: str = "--batch") -> None:
    """A batch size of at least one whose images fit in this machine's memory."""
    from rn50.machine import check_batch_memory

    if batch < 1:
        raise UsageError(f"{name} must be >= 1, got {batch}", fix="pass a positive batch size")
    check_batch_memory(batch, flag=name)


def cpu_flag() -> Any:
    """--cpu, for every command that makes the onnxruntime-cpu INT8 file (quantize, the pipeline)."""
    from rn50.machine import AUTO

    return flag(
        "--cpu",
        default=AUTO,
        help="INT8 class of the CPUs the onnxruntime-cpu file is for: auto (this machine's, by CPUID), "
        "vnni (full-range weights: VNNI/AMX, arm64) or avx2 (7-bit weights: faithful on every x86 CPU).",
    )


def model_name_flag() -> Any:
    """--model-name: the served model's name (serve, loadtest)."""
    return flag("--model-name", default="resnet50", help="The model's name on the Triton server.")


# --threads of the commands that measure or compare (parity, profile, the pipeline): one flag, one default — the
# cores this process may use (``machine.usable_cores``), given to every runtime, the PyTorch reference included.
THREADS = option("--threads", help="CPU threads of every CPU runtime (default: the cores this process may use).")


def threads_flag() -> Any:
    """--threads as a field of a command's own options (parity); profile's ``Settings`` is declared with it below."""
    from rn50.machine import usable_cores

    return flag(*THREADS.decls, help=THREADS.help, default_factory=usable_cores)


def instance_threads_flag(default_is: str) -> Any:
    """--threads of a served model: per instance, not per process (serve, triton-repo); unset, the backend's own."""
    return flag("--threads", default=None, help=f"CPU threads per instance (default: {default_is}).")


def runtimes_flag(help: str = "Runtime(s) to run (default: every one available here)") -> Any:
    from rn50.runtimes.registry import describe_runtimes, runtime_names

    return flag(
        "--runtime",
        default=None,
        cli_type=list[str] | None,
        help=lambda: f"{help}: {describe_runtimes(runtime_names(reference=False))}.",
    )


def artifacts_flag(help: str = "Artifact(s) of the manifest to include (default: all).") -> Any:
    return flag("--artifact", default=None, cli_type=list[str] | None, help=help)


@dataclass(frozen=True)
class FeedOptions:
    """Where the images come from: --images, --arrays, --random, or --count sample-photo crops."""

    images: Path | None = flag(
        "--images", default=None, help="Image folder (in parity, class sub-folders with a classes.txt add accuracy)."
    )
    labels: Path | None = flag(
        "--labels",
        default=None,
        help="Labels for --images (adds accuracy): a CSV of file,label, or one label per line for the images in "
        "sorted order (ImageNet's validation layout); a label is a class index, or a name or synset id of the "
        "folder's class-index file.",
    )
    arrays: Path | None = flag("--arrays", default=None, help=".npy/.npz of preprocessed float32 NCHW images.")
    random: int | None = flag(
        "--random", default=None, help="N seeded random tensors instead of images (flagged: says little)."
    )
    count: int = flag("--count", default=PARITY_COUNT, help="Sample-photo crops, when no other source is given.")

    def check(self) -> None:
        """The cheap checks, before any work: one source, a sensible count, an image folder that exists."""
        from rn50.feeds import check_array_file, check_count, check_image_folder, check_one_source

        check_one_source(self.images, self.arrays, self.random)
        if self.labels is not None and self.images is None:
            raise UsageError("--labels labels the images of --images", fix="pass --images DIR with it")
        if self.labels is not None and not Path(self.labels).is_file():
            raise UsageError(f"labels file not found: {self.labels}", fix="pass --labels an existing CSV or text file")
        if self.images is not None:
            check_image_folder(self.images)
        elif self.arrays is not None:
            check_array_file(Path(self.arrays))
        elif self.random is not None:
            check_count(self.random, "--random")
        else:
            check_count(self.count)

    def read(self, split: str = "evaluation", status: Callable[[str], None] | None = None) -> FeedSet:
        """The images (a folder's read into a temporary file as they go, said through ``status``)."""
        from rn50 import feeds

        def progress(done: int, total: int) -> None:
            if status is not None:
                status(f"reading images: {done:,} of {total:,}")

        return feeds.resolve(
            images=self.images,
            labels=self.labels,
            arrays_path=self.arrays,
            random_count=self.random,
            count=self.count,
            split=split,
            progress=progress,
        )


@dataclass(frozen=True)
class CalibrationOptions:
    """How activation ranges are collected: --method, --percentile, --batch."""

    method: str = flag(
        "--method",
        default=DEFAULT_METHOD,
        help=f"Range method: {', '.join(METHODS)}; in quantize also {AUTO_METHOD} (each method's file measured on "
        "held-apart crops, the best kept).",
    )
    percentile: float | None = flag(
        "--percentile", default=None, help="Percentile for --method percentile (default 99.99)."
    )
    batch: int = flag("--calibration-batch", default=CALIBRATION_BATCH, help="Images per calibration batch.")

    def check(self, *, auto: bool = False) -> dict[str, Any]:
        """Refuses bad options; returns the method's options (part of the table's key). ``auto``: --method auto is
        allowed (rn50 quantize compares the methods); everywhere else one method is."""
        check_batch(self.batch, "--calibration-batch")
        if self.method == AUTO_METHOD:
            if not auto:
                raise UsageError(
                    f"--method {AUTO_METHOD} compares the methods' INT8 files, which only rn50 quantize makes",
                    fix=f"pick one method here, or run rn50 quantize --int8 --method {AUTO_METHOD}",
                )
            return {}  # the methods compared are each checked when run
        return method_options(self.method, percentile=self.percentile)


def parse_thresholds(items: list[str] | None) -> dict[str, dict[str, float]]:
    """``PRECISION:KEY=VALUE`` items (--threshold), e.g. ``int8:min_cosine=0.99``; ``fidelity:…`` bounds an INT8
    runtime's error against its own Q/DQ file (``engine:…``, its name before parity.json schema 4, is read as it)."""
    from rn50.metrics import THRESHOLD_ALIASES, THRESHOLD_SETS, Thresholds

    keys = set(Thresholds.__dataclass_fields__)
    out: dict[str, dict[str, float]] = {}
    for item in items or []:
        try:
            given, rest = item.split(":", 1)
            prec = THRESHOLD_ALIASES.get(given, given)
            key, value = rest.split("=", 1)
            number = float(value[:-1]) / 100 if value.endswith("%") else float(value)
        except ValueError:
            raise UsageError(
                f"bad --threshold {item!r}", fix="write PRECISION:KEY=VALUE, e.g. int8:min_cosine=0.99"
            ) from None
        if prec not in THRESHOLD_SETS or key not in keys:
            raise UsageError(
                f"bad --threshold {item!r}", fix=f"precision in {sorted(THRESHOLD_SETS)}, key in {sorted(keys)}"
            )
        out.setdefault(prec, {})[key] = number
    return out


BUDGET_RANGES = {  # --budget key -> (lowest, highest) accepted value
    "min_cosine": (0.0, 1.0),
    "min_cosine_mean": (0.0, 1.0),
    "min_top1": (0.0, 1.0),
    "max_abs": (0.0, float("inf")),
}


def parse_budget(items: list[str]) -> Thresholds:
    """``KEY=VALUE[,KEY=VALUE]`` (--budget, keys as in --threshold): the bounds INT8 must keep against FP32."""
    from rn50.metrics import Thresholds

    values: dict[str, float] = {}
    for item in (part.strip() for text in items for part in text.split(",") if part.strip()):
        key, sep, value = item.partition("=")
        if key not in BUDGET_RANGES or not sep:
            raise UsageError(
                f"unknown --budget key {key!r}" if sep else f"bad --budget {item!r}",
                fix=f"write KEY=VALUE with KEY one of {', '.join(BUDGET_RANGES)}, e.g. min_cosine_mean=0.998",
            )
        try:
            number = float(value)
        except ValueError:
            raise UsageError(f"bad --budget value {item!r}", fix="write a number, e.g. min_cosine_mean=0.998") from None
        lo, hi = BUDGET_RANGES[key]
        if not lo < number <= hi:
            raise UsageError(f"--budget {item} is out of range", fix=f"{key} must be above {lo:g} and at most {hi:g}")
        if key in values:
            raise UsageError(f"--budget gives {key} twice", fix="give each key once")
        values[key] = number
    if not values:
        raise UsageError("--budget is empty", fix="write KEY=VALUE, e.g. min_cosine_mean=0.998")
    return Thresholds(**values)


@dataclass(frozen=True)
class ThresholdOptions:
    """Parity thresholds: the defaults per precision, with --threshold overrides."""

    overrides: dict[str, dict[str, float]] = field(default_factory=dict)

    @staticmethod
    def flag() -> Any:
        """--threshold, for every command that judges results (parity, loadtest, the pipeline)."""
        return flag(
            "--threshold",
            default_factory=ThresholdOptions,
            parse=ThresholdOptions.parse,
            cli_type=list[str] | None,
            help="Override a bound, PRECISION:KEY=VALUE, e.g. int8:min_cosine=0.99 (fidelity:… bounds an INT8 runtime "
            "against its file; int8:max_top1_drop=1% judges accuracy on labelled images against the reference's).",
        )

    @classmethod
    def parse(cls, items: list[str] | None) -> ThresholdOptions:
        return cls(parse_thresholds(items))

    def limits(self, precision: str) -> Thresholds:
        from rn50.metrics import thresholds_for

        return thresholds_for(precision, **self.overrides.get(precision, {}))


# --- the flags of the library's option objects ------------------------------------------------------------------
# The library's option objects (the export's, profile's settings, Triton's endpoints and batching, a TensorRT build's)
# hold plain fields with their defaults; which flag sets each is said here, once, for every command that holds them.
def depth_flag() -> Any:
    """--depth, for every options object that builds the model and is not an ExportConfig (info)."""
    from rn50.exporter.config import DEFAULT_DEPTH

    return flag("--depth", default=DEFAULT_DEPTH, help=_DEPTH_HELP)


def _declare_library_flags() -> None:
    from rn50.commands.flags import declare, option
    from rn50.exporter.config import SUPPORTED_OPSETS, ExportConfig
    from rn50.results.profile_results import DEFAULT_BATCHES, Settings, parse_batches
    from rn50.runtimes.trt_plan import HARDWARE_COMPAT, MAX_OPT_LEVEL, BuildOptions
    from rn50.serving.server import Endpoints
    from rn50.serving.triton_config import Batching

    declare(
        ExportConfig,
        depth=option("--depth", help=_DEPTH_HELP),
        weights=option(
            "--weights", help="'seeded' (deterministic demo weights) or a torchvision-style checkpoint file."
        ),
        opset=option("--opset", help=f"ONNX opset, {SUPPORTED_OPSETS.start} to {SUPPORTED_OPSETS.stop - 1}."),
        simplify=option("--simplify/--no-simplify", help="Run onnxsim (BatchNorm folded into the convolutions)."),
        head=option(
            "--head",
            help="What the output is: classifier (judged with top-1/top-5 too), embedding (cosine and error only), "
            "or auto (1000 outputs: ImageNet's classifier; any other width: an embedding).",
        ),
    )
    declare(
        Settings,
        batches=option(
            "--batch",
            parse=parse_batches,
            cli_type=list[str] | None,
            help=f"Batch sizes, e.g. 1,8,32 or --batch 1 --batch 8 (default {','.join(map(str, DEFAULT_BATCHES))}).",
        ),
        warmup_s=option("--warmup", help="Seconds of warm-up before each measured row."),
        warmup_iterations=option("--warmup-iterations", help="Warm-up iterations at least, whatever --warmup says."),
        duration_s=option("--duration", help="Seconds measured per runtime, artifact and batch."),
        iterations=option("--iterations", help="An exact number of measured iterations, instead of --duration."),
        threads=THREADS,
        cuda_graphs=option(
            "--cuda-graphs/--no-cuda-graphs", help="GPU rows: also time the run replayed as a CUDA graph."
        ),
    )
    declare(
        Endpoints,
        host=option("--host", help="Address to listen on (0.0.0.0: every interface)."),
        http_port=option("--port", help="HTTP port."),
        grpc_port=option("--grpc-port", help="gRPC port."),
        metrics_port=option("--metrics-port", help="Prometheus metrics port."),
        max_request_mb=option(
            "--max-request-mb",
            help="Largest HTTP request body in MB: a larger one is refused (413) before Triton reads it, by rn50's "
            "front on the HTTP port; 0: no limit and no front.",
        ),
    )
    declare(
        Batching,
        max_batch=option(
            "--max-batch-size",
            help="Triton's max_batch_size for ONNX and IR models (an engine's is its profile's maximum).",
        ),
        queue_delay_us=option("--queue-delay-us", help="Dynamic batcher: how long a request may wait for others (µs)."),
        instances=option("--instances", help="Model instances (Triton's instance_group count)."),
    )
    declare(
        BuildOptions,
        precision=option(
            choices={"--fp16": "fp16", "--int8": "int8"},
            help="Build from the FP16 ONNX (--fp16) or the TensorRT Q/DQ ONNX (--int8), made first if missing; "
            "neither: FP32.",
        ),
        min_batch=option("--min-batch", help="Optimisation profile: smallest batch."),
        opt_batch=option("--opt-batch", help="Optimisation profile: the batch TensorRT tunes for."),
        max_batch=option("--max-batch", help="Optimisation profile: largest batch."),
        workspace_mib=option("--workspace", help="Workspace limit in MiB."),
        opt_level=option("--opt-level", help=f"Builder optimisation level, 0-{MAX_OPT_LEVEL}."),
        hardware_compat=option("--hardware-compat", help=f"Hardware compatibility: {', '.join(HARDWARE_COMPAT)}."),
        version_compat=option("--version-compat", help="An engine later TensorRT versions can load."),
    )


_DEPTH_HELP = "ResNet depth: 18, 34, 50, 101, 152."  # rn50.exporter.config.DEPTHS (a test compares them)
_declare_library_flags()

"""OpenVINO on the CPU: rn50's ONNX files (FP32, FP16, both INT8 Q/DQ forms) and OpenVINO IR (.xml + .bin).

OpenVINO's CPU plugin runs an FP32 model in bf16 by default wherever the CPU has bf16 instructions: a
silent change of precision. This runner always sets the inference precision (``f32``, or ``bf16`` as its
own explicit row), reads back what the compiled model got, and refuses to report one under the other.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np

from rn50.errors import EnvironmentProblem, UsageError
from rn50.runtimes.base import Feed, Runner, TensorSpec
from rn50.words import cmd, opt

log = logging.getLogger(__name__)

INFERENCE_PRECISIONS = ("f32", "bf16")
NO_BF16 = "this CPU has no bf16 support (OpenVINO's CPU plugin does not list BF16)"
OV_TYPES = {"f32": "float32", "f16": "float16", "i64": "int64", "u8": "uint8"}


def import_openvino() -> Any:
    try:
        import openvino
    except ImportError as e:
        raise EnvironmentProblem("openvino is not installed", fix="pip install 'rn50[openvino]'") from e
    return openvino


def cpu_capabilities() -> list[str]:
    """What OpenVINO's CPU plugin says this CPU can do (FP32, BF16, INT8, …)."""
    ov = import_openvino()
    return [
        str(c) for c in ov.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES")
    ]  # a fresh Core: callable anywhere


CONTRACT_NAMES = ("input", "logits")  # rn50's tensor names (the Runner contract)


def port_name(port: Any) -> str:
    """A port's rn50 name: OpenVINO keeps every name a tensor had (an FP16 model's input is also its Cast's output)."""
    names = port.get_names()
    return next((n for n in CONTRACT_NAMES if n in names), port.get_any_name())


NOISE = ("Exception from", "Check '", "FrontEnd API failed", "Model wasn't fully converted", "Summary:")


def first_line(e: BaseException) -> str:
    """OpenVINO's C++ message without its source-file preamble: the lines that say what is wrong."""
    lines = [line.strip(" -") for line in str(e).splitlines() if line.strip() and not line.strip().startswith(NOISE)]
    return ("; ".join(lines) or type(e).__name__)[:300]


def unconverted_nodes(path: Path, message: str) -> str:
    """The ONNX nodes of the operator types OpenVINO names as unconvertible (it names types, not nodes)."""
    marker = "No conversion rule found for operations:"
    if path.suffix != ".onnx" or marker not in message:
        return ""
    import onnx

    types = {t.strip() for t in message.split(marker, 1)[1].splitlines()[0].split(",")}
    graph = onnx.load(str(path), load_external_data=False).graph
    nodes = [
        f"{n.name or '(unnamed)'} ({n.domain + '.' if n.domain else ''}{n.op_type})"
        for n in graph.node
        if f"{n.domain + '.' if n.domain else ''}{n.op_type}" in types
    ]
    return (
        f"node {', '.join(nodes[:3])}" + (f" (+{len(nodes) - 3} more)" if len(nodes) > 3 else "") + ": "
        if nodes
        else ""
    )


def read_model(core: Any, path: Path) -> Any:
    """An ONNX file or an IR pair, read by OpenVINO; every way it can fail is one UsageError naming the file."""
    if not path.is_file():
        raise UsageError(
            f"model file not found: {path}", fix=f"run {cmd('export')} ({opt('ir')} for OpenVINO IR) first"
        )
    if path.suffix == ".xml":
        import xml.etree.ElementTree as ElementTree

        weights = path.with_suffix(".bin")
        if not weights.is_file():
            raise UsageError(
                f"{path.name} has no weights file {weights.name} beside it",
                fix=f"keep the .xml and .bin of an IR together, or write them again with {cmd('export', ir=True)}",
            )
        try:
            ElementTree.parse(path)
        except ElementTree.ParseError as e:
            raise UsageError(
                f"{path.name} is not an OpenVINO IR: not valid XML ({e})",
                fix=f"write the IR again with {cmd('export', ir=True)} / {cmd('quantize', ir=True)}",
            ) from e
    try:
        return core.read_model(str(path))
    except Exception as e:  # OpenVINO raises RuntimeError/GeneralFailure/OpConversionFailure with C++ text
        raise UsageError(
            f"OpenVINO cannot read {path.name}: {unconverted_nodes(path, str(e))}{first_line(e)}",
            fix=f"check the file ({cmd('verify')}), or write it again with {cmd('export')} / quantize",
        ) from e


class OpenVinoRunner(Runner):
    """Batch 1 runs on a model compiled with the LATENCY hint; larger batches on one compiled with the
    THROUGHPUT hint, split across its streams (one asynchronous request per stream)."""

    backend = "openvino"

    def __init__(
        self, model_path: Path | str, *, precision: str = "f32", threads: int | None = None, label: str | None = None
    ):
        if precision not in INFERENCE_PRECISIONS:
            raise UsageError(
                f"unknown OpenVINO inference precision {precision!r}",
                fix=f"use one of {', '.join(INFERENCE_PRECISIONS)}",
            )
        super().__init__(label=label or f"openvino-cpu ({precision})")
        self.model_path = Path(model_path)
        self.precision = precision
        self.threads = threads
        self._core: Any = None
        self._model: Any = None
        self._compiled: dict[str, Any] = {}  # hint -> compiled model
        self._request: Any = None  # LATENCY
        self._stream_requests: list[Any] = []  # THROUGHPUT: one request per stream
        self._output_names: list[str] = []

    def activate(self) -> None:
        ov = import_openvino()
        self._core = ov.Core()
        if self.precision == "bf16" and "BF16" not in [
            str(c) for c in self._core.get_property("CPU", "OPTIMIZATION_CAPABILITIES")
        ]:
            raise EnvironmentProblem(NO_BF16, fix="use openvino-cpu (f32) on this machine")
        self._model = read_model(self._core, self.model_path)
        self._request = self.compiled("LATENCY").create_infer_request()

    def compiled(self, hint: str) -> Any:
        """The model compiled for ``hint``, its inference precision checked against the one asked for."""
        if hint in self._compiled:
            return self._compiled[hint]
        config: dict[str, Any] = {"INFERENCE_PRECISION_HINT": self.precision, "PERFORMANCE_HINT": hint}
        if self.threads:
            config["INFERENCE_NUM_THREADS"] = self.threads
        try:
            compiled = self._core.compile_model(self._model, "CPU", config)
        except Exception as e:
            raise UsageError(
                f"OpenVINO cannot compile {self.model_path.name}: {first_line(e)}",
                fix=f"check the file ({cmd('verify')}), or write it again with {cmd('export')} / quantize",
            ) from e
        got = compiled.get_property("INFERENCE_PRECISION_HINT")  # an openvino Type: f32, bf16, f16
        ran = got.get_type_name() if hasattr(got, "get_type_name") else str(got)
        if ran != self.precision:
            raise EnvironmentProblem(
                f"OpenVINO compiled {self.model_path.name} for {ran}, not the {self.precision} asked for",
                fix=f"report this with {cmd('doctor')}'s output; rn50 never reports one precision under another",
            )
        self._compiled[hint] = compiled
        return compiled

    def deactivate(self) -> None:
        self._stream_requests, self._request = [], None  # requests first, then the compiled models they belong to
        self._compiled = {}
        self._model = self._core = None

    def input_specs(self) -> list[TensorSpec]:
        specs = []
        for port in self.compiled("LATENCY").inputs:
            shape = tuple(d.get_length() if d.is_static else None for d in port.get_partial_shape())
            specs.append(TensorSpec(port_name(port), OV_TYPES.get(port.get_element_type().get_type_name(), "?"), shape))
        return specs

    @property
    def device(self) -> str:
        """What ran: OpenVINO's CPU plugin, the inference precision the compiled model reports, the hints."""
        hints = "LATENCY hint at batch 1, THROUGHPUT hint (its streams) above"
        return f"openvino CPU, {self.precision} inference precision; {hints}"

    def _infer(self, feed: Feed) -> Feed:
        batch = len(next(iter(feed.values())))
        if batch == 1:
            result = self._request.infer({name: np.ascontiguousarray(arr) for name, arr in feed.items()})
            # The request reuses its output buffers: copy before the next call overwrites them.
            return {port_name(port): np.array(result[port], copy=True) for port in self._compiled["LATENCY"].outputs}
        return self._infer_streams(feed, batch)

    def _infer_streams(self, feed: Feed, batch: int) -> Feed:
        if not self._stream_requests:  # one request per stream of the THROUGHPUT model, made once
            compiled = self.compiled("THROUGHPUT")
            streams = int(compiled.get_property("NUM_STREAMS"))
            self._stream_requests = [compiled.create_infer_request() for _ in range(streams)]
            self._output_names = [port_name(port) for port in compiled.outputs]
        requests = self._stream_requests[: min(len(self._stream_requests), batch)]
        bounds = np.linspace(0, batch, len(requests) + 1).astype(int)
        for i, request in enumerate(requests):  # one slice of the batch per stream, concurrently
            request.start_async(
                {name: np.ascontiguousarray(arr[bounds[i] : bounds[i + 1]]) for name, arr in feed.items()}
            )
        for request in requests:
            request.wait()
        return {
            name: np.concatenate([np.array(r.get_output_tensor(i).data, copy=True) for r in requests])
            for i, name in enumerate(self._output_names)
        }

"""Triton serving: the model repository (configs parsed with Triton's own protobuf), `rn50 serve` on a real
Triton Inference Server (PyTriton's, on the loopback interface), `rn50 loadtest`, and the faults a served
model meets. Servers are started by the tests, bounded in requests and time, and stopped."""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pytest
from helpers import one_line_error
from typer.testing import CliRunner

from rn50.cli import app
from rn50.errors import UsageError
from rn50.runtimes.model_io import ModelIO, TensorIO
from rn50.serving.triton_config import Batching, batch_limits

if TYPE_CHECKING:
    from collections.abc import Iterator

cli = CliRunner()
needs_triton = pytest.mark.skipif(
    importlib.util.find_spec("pytriton") is None or importlib.util.find_spec("tritonclient") is None,
    reason="nvidia-pytriton and tritonclient are not installed (pip install 'rn50[triton]')",
)
RN50 = [sys.executable, "-m", "rn50"]
START_TIMEOUT_S = 120


def free_ports(n: int) -> list[int]:
    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


@pytest.fixture(scope="module")
def served_dir(
    pipeline_run: tuple[Path, subprocess.CompletedProcess[str]], tmp_path_factory: pytest.TempPathFactory
) -> Path:
    """A copy of the README quick start's work directory (ResNet-50 and its INT8 files, as a user serves them; the
    load test writes its reports there)."""
    import shutil

    workdir, done = pipeline_run
    assert done.returncode == 0, done.stdout + done.stderr
    dst = tmp_path_factory.mktemp("served") / "work"
    shutil.copytree(workdir, dst)
    return dst


class Server:
    """`rn50 serve` as a user starts it, in its own process."""

    def __init__(self, workdir: Path, *extra: str):
        self.http, self.grpc, self.metrics = free_ports(3)
        args = [
            *RN50,
            "serve",
            "--out",
            str(workdir),
            "--port",
            str(self.http),
            "--grpc-port",
            str(self.grpc),
            "--metrics-port",
            str(self.metrics),
            *extra,
        ]
        self.proc = subprocess.Popen(
            args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=os.environ | {"COLUMNS": "400"}
        )
        self.lines: list[str] = []
        self.ready = threading.Event()
        threading.Thread(target=self._read, daemon=True).start()
        if not self.ready.wait(START_TIMEOUT_S):
            self.stop()
            pytest.fail("rn50 serve did not become ready:\n" + "".join(self.lines))

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line)
            if line.startswith("ready"):
                self.ready.set()
        self.ready.set()  # ended: the caller sees why in the lines

    @property
    def url(self) -> str:
        return f"127.0.0.1:{self.http}"

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout=60)


@pytest.fixture(scope="module")
def server(served_dir: Path) -> Iterator[Server]:
    """The INT8 ONNX Runtime CPU model served with a 100 ms batching window, so that requests sent together
    are batched together."""
    s = Server(served_dir, "--artifact", "onnx-int8-onnxruntime-cpu", "--queue-delay-us", "100000")
    yield s
    s.stop()


def infer(
    url: str, x: np.ndarray, *, name: str = "input", datatype: str = "FP32", model: str = "resnet50"
) -> np.ndarray:
    import tritonclient.http as httpclient

    client = httpclient.InferenceServerClient(url)
    try:
        request = httpclient.InferInput(name, list(x.shape), datatype)
        request.set_data_from_numpy(x)
        return client.infer(model, [request]).as_numpy("logits")  # type: ignore[no-any-return]
    finally:
        client.close()


def error_of(url: str, x: np.ndarray, **kwargs: Any) -> str:
    return refusal_of(url, x, **kwargs)[1]


def refusal_of(url: str, x: np.ndarray, **kwargs: Any) -> tuple[str | None, str]:
    """The HTTP status and the error message of a request the server refuses."""
    from tritonclient.utils import InferenceServerException

    with pytest.raises(InferenceServerException) as e:
        infer(url, x, **kwargs)
    return e.value.status(), str(e.value)


def crops(n: int) -> np.ndarray:
    from rn50.samples import sample_crops

    return sample_crops(n, split="evaluation")


# --- the repository --------------------------------------------------------------------------------------


@needs_triton
def test_triton_repo_writes_a_checked_config_per_artifact_and_device(served_dir: Path, tmp_path: Path) -> None:
    from rn50.artifacts import sha256_file
    from rn50.serving.triton_config import parse

    repo = tmp_path / "repo"
    result = cli.invoke(
        app, ["triton-repo", "--out", str(served_dir), "--repo", str(repo), "--threads", "2", "--max-batch-size", "16"]
    )
    assert result.exit_code == 0, result.output
    manifest = json.loads((served_dir / "manifest.json").read_text())["artifacts"]
    expected = {
        "onnx-fp32-cpu": "onnx-fp32",
        "onnx-fp32-gpu": "onnx-fp32",
        "onnx-fp16-gpu": "onnx-fp16",
        "onnx-int8-onnxruntime-cpu-cpu": "onnx-int8-onnxruntime-cpu",
        "onnx-int8-tensorrt-gpu": "onnx-int8-tensorrt",
    }
    assert {p.name for p in repo.iterdir() if p.is_dir()} == set(expected)
    for name, artifact in expected.items():
        cfg = parse((repo / name / "config.pbtxt").read_text())  # Triton's own ModelConfig message
        assert cfg.name == name and cfg.backend == "onnxruntime" and cfg.max_batch_size == 16
        assert [(i.name, list(i.dims)) for i in cfg.input] == [("input", [3, 224, 224])]
        assert [(o.name, list(o.dims)) for o in cfg.output] == [("logits", [1000])]
        assert list(cfg.dynamic_batching.preferred_batch_size) == [16]
        assert [w.batch_size for w in cfg.model_warmup] == [1, 16] and all(
            w.inputs["input"].zero_data for w in cfg.model_warmup
        )
        assert (
            cfg.parameters["rn50_artifact"].string_value == artifact
            and cfg.parameters["rn50_sha256"].string_value == manifest[artifact]["sha256"]
        )
        assert sha256_file(repo / name / "1" / "model.onnx") == manifest[artifact]["sha256"]
        kind = cfg.instance_group[0].kind
        assert (kind == 2) == name.endswith("-cpu")  # KIND_CPU = 2, KIND_GPU = 1
    trt = parse((repo / "onnx-int8-tensorrt-gpu" / "config.pbtxt").read_text())
    accelerator = trt.optimization.execution_accelerators.gpu_execution_accelerator[0]
    assert accelerator.name == "tensorrt" and accelerator.parameters["precision_mode"] == "INT8"
    cpu = parse((repo / "onnx-fp32-cpu" / "config.pbtxt").read_text())
    assert cpu.parameters["intra_op_thread_count"].string_value == "2"
    index = json.loads((repo / "rn50-repository.json").read_text())
    assert {m["name"] for m in index["models"]} == set(expected)

    only_cpu = cli.invoke(
        app, ["triton-repo", "--out", str(served_dir), "--repo", str(tmp_path / "cpu"), "--device", "cpu"]
    )
    assert only_cpu.exit_code == 0, only_cpu.output
    assert {p.name for p in (tmp_path / "cpu").iterdir() if p.is_dir()} == {
        "onnx-fp32-cpu",
        "onnx-int8-onnxruntime-cpu-cpu",
    }
    # A filtered run into the same repository rewrites its own model and keeps (and still lists) the others.
    again = cli.invoke(
        app,
        ["triton-repo", "--out", str(served_dir), "--repo", str(repo), "--artifact", "onnx-fp32", "--device", "cpu"],
    )
    assert again.exit_code == 0, again.output
    assert {m["name"] for m in json.loads((repo / "rn50-repository.json").read_text())["models"]} == set(expected)
    assert (
        parse((repo / "onnx-fp32-cpu" / "config.pbtxt").read_text()).max_batch_size == 8
    )  # rewritten with this run's options


@needs_triton
@pytest.mark.parametrize(
    ("args", "code", "needle"),
    [
        (["--device", "tpu"], 2, "unknown device"),
        (["--artifact", "onnx-int4"], 2, "no artifact named onnx-int4"),
        (["--max-batch-size", "0"], 2, "--max-batch-size 0"),
    ],
)
def test_triton_repo_bad_input_is_one_line(
    served_dir: Path, tmp_path: Path, args: list[str], code: int, needle: str
) -> None:
    one_line_error(
        cli.invoke(app, ["triton-repo", "--out", str(served_dir), "--repo", str(tmp_path / "r"), *args]), code, needle
    )
    assert not (tmp_path / "r").exists()


@needs_triton
def test_a_config_that_does_not_match_its_artifact_is_refused() -> None:
    from rn50.runtimes.kinds import Placement
    from rn50.serving.triton_config import build, check, model_config_pb2, parse, to_text

    io = ModelIO((TensorIO("input", "float32", (3, 224, 224)),), (TensorIO("logits", "float32", (1000,)),))
    cfg = parse(
        to_text(
            build(
                "m",
                Placement("cpu", "onnxruntime", "model.onnx"),
                io,
                Batching(),
                precision="fp32",
                artifact="a",
                sha256="0" * 64,
            ),
            ["x"],
        )
    )
    check(cfg, io, where="m")  # as written: accepted
    cfg.input[0].dims[0] = 4
    cfg.output[0].data_type = model_config_pb2().DataType.Value("TYPE_FP64")
    cfg.dynamic_batching.preferred_batch_size.append(64)
    with pytest.raises(UsageError) as e:
        check(cfg, io, where="m/config.pbtxt")
    assert "input 'input' dims [4, 224, 224]" in e.value.problem and "output 'logits' is TYPE_FP64" in e.value.problem
    assert "preferred batch size(s) [64]" in e.value.problem
    with pytest.raises(UsageError, match="not a Triton model configuration"):
        parse("max_batch_size: eight")


@needs_triton
def test_an_engine_config_comes_from_its_sidecar_and_profile(tmp_path: Path) -> None:
    from rn50.runtimes.kinds import Placement
    from rn50.runtimes.model_io import engine_io
    from rn50.runtimes.trt_plan import Sidecar, sidecar_path
    from rn50.serving.triton_config import build, check, parse, to_text

    engine = tmp_path / "resnet50.fp16.engine"
    engine.write_bytes(b"plan")
    io_entries = [
        {"name": "input", "mode": "TensorIOMode.INPUT", "dtype": "DataType.FLOAT", "shape": [-1, 3, 224, 224]},
        {"name": "logits", "mode": "TensorIOMode.OUTPUT", "dtype": "DataType.FLOAT", "shape": [-1, 1000]},
    ]
    Sidecar(
        "10.13.0",
        "NVIDIA H100",
        "9.0",
        "a" * 64,
        "b" * 64,
        "k",
        {},
        [{"input_min": [1, 3, 224, 224], "input_opt": [8, 3, 224, 224], "input_max": [32, 3, 224, 224]}],
        io_entries,
    ).save(sidecar_path(engine))
    io = engine_io(engine)
    assert io.inputs == (TensorIO("input", "float32", (3, 224, 224)),) and io.outputs == (
        TensorIO("logits", "float32", (1000,)),
    )
    cfg = parse(
        to_text(
            build(
                "engine-fp16-gpu",
                Placement("gpu", "tensorrt", "model.plan"),
                io,
                Batching(max_batch=4),
                precision="fp16",
                artifact="engine-fp16",
                sha256="b" * 64,
            ),
            ["x"],
        )
    )
    check(cfg, io, where="engine-fp16-gpu")
    assert (
        cfg.platform == "tensorrt_plan"
        and cfg.max_batch_size == 32
        and list(cfg.dynamic_batching.preferred_batch_size) == [8, 32]
    )
    cfg.max_batch_size = 64
    with pytest.raises(UsageError, match="outside the engine's profile 1..32"):
        check(cfg, io, where="engine-fp16-gpu")


def test_a_model_that_fails_to_load_is_named_from_tritons_log(tmp_path: Path) -> None:
    from rn50.serving.server import _load_error

    log = tmp_path / "triton.log"
    assert _load_error(log) is None
    log.write_text(
        'I1127 20:55:15.872407 21145 backend_model.cc:692] "ERROR: Failed to create instance: boom"\n'
        "E1127 20:55:15.872507 21145 model_lifecycle.cc:642] \"failed to load 'resnet50' version 1: Invalid argument: "
        "failed to run warmup sample 'zero_batch_1': the runtime refused it; \"\n"
    )
    assert _load_error(log) == "Invalid argument: failed to run warmup sample 'zero_batch_1': the runtime refused it; "


def test_an_engine_profile_sets_the_batch_limits_and_must_start_at_one() -> None:
    io = ModelIO((), (), batch_range=(1, 32), batch_opt=8)
    assert batch_limits(io, Batching(max_batch=4), "e") == (32, [8, 32])
    with pytest.raises(UsageError, match="starts at batch 2.*--min-batch 1"):
        batch_limits(ModelIO((), (), batch_range=(2, 32), batch_opt=8), Batching(), "engine-fp16-gpu")


# --- what the served model does with each request -------------------------------------------------------


class _Runner:
    label = "fake · runner"

    def __init__(self, fail: bool = False, nan_out: bool = False):
        self.calls: list[int] = []
        self.fail, self.nan_out = fail, nan_out

    def infer(self, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        from rn50.errors import CheckFailed

        x = feed["input"]
        self.calls.append(len(x))
        if self.fail:
            raise CheckFailed("the runtime refused the batch")
        y = x.reshape(len(x), -1)[:, :1000] * 2
        return {"logits": np.full_like(y, np.nan) if self.nan_out else y}


def test_each_request_is_answered_alone_a_bad_one_does_not_fail_its_batch() -> None:
    from rn50.serving.backend import Refusal, ServedArtifact, ServedModel, non_finite_problem

    art = ServedArtifact("onnxruntime-cpu", "int8", "a", Path("a.onnx"), "0" * 64)
    runner = _Runner()
    model = ServedModel(art, runner)  # type: ignore[arg-type]
    rng = np.random.default_rng(0)
    good1, good2 = rng.random((2, 3, 224, 224), np.float32), rng.random((1, 3, 224, 224), np.float32)
    bad = good2.copy()
    bad[0, 1, 2, 3] = np.inf
    answers = model.answer([good1, bad, good2])
    assert runner.calls == [3]  # the two good requests, one batch of 3 images; the bad one never reaches the runner
    assert np.array_equal(answers[0], good1.reshape(2, -1)[:, :1000] * 2) and np.array_equal(
        answers[2], good2.reshape(1, -1)[:, :1000] * 2
    )
    assert answers[1] == Refusal(non_finite_problem(bad) or "", client_error=True)  # the client's fault: HTTP 400
    assert "1 NaN/Inf value(s)" in answers[1].message
    refused = ServedModel(art, _Runner(fail=True)).answer([good1, bad])  # type: ignore[arg-type]
    assert refused[0] == Refusal("the runtime refused the batch", client_error=True)
    assert isinstance(refused[1], Refusal) and "NaN/Inf" in refused[1].message
    nan = ServedModel(art, _Runner(nan_out=True)).answer([good2])  # type: ignore[arg-type]
    assert isinstance(nan[0], Refusal) and "produced NaN/Inf logits" in nan[0].message
    assert not nan[0].client_error  # the server's fault: HTTP 500


def test_a_wrong_answer_is_named_by_the_bound_it_breaks() -> None:
    from rn50.metrics import thresholds_for
    from rn50.serving.clients import wrong_answer

    ref = np.linspace(-1, 1, 1000, dtype=np.float32)
    assert wrong_answer(ref + 1e-5, ref, thresholds_for("fp32")) is None
    why = wrong_answer(ref[::-1].copy(), ref, thresholds_for("fp32"))
    assert why is not None and "cosine_min" in why and "max_abs" in why


# --- a real Triton server ---------------------------------------------------------------------------------


@needs_triton
def test_serve_refuses_bad_options_before_starting(served_dir: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        port = taken.getsockname()[1]
        grpc, metrics = free_ports(2)
        base = ["serve", "--out", str(served_dir), "--grpc-port", str(grpc), "--metrics-port", str(metrics)]
        one_line_error(cli.invoke(app, [*base, "--port", str(port)]), 2, f"--port {port} on 127.0.0.1 is in use")
    http = free_ports(1)[0]
    base += ["--port", str(http)]
    one_line_error(
        cli.invoke(app, [*base, "--runtime", "tensorrt"]),
        2,
        "onnx-fp32 is a onnx artifact; --runtime tensorrt does not run it",
    )
    one_line_error(cli.invoke(app, [*base, "--artifact", "onnx-int4"]), 2, "no onnx-int4 artifact")
    one_line_error(cli.invoke(app, [*base, "--port", str(grpc)]), 2, "must differ")


@needs_triton
def test_loadtest_checks_every_answer_and_reports_the_batches_triton_formed(server: Server, served_dir: Path) -> None:
    result = subprocess.run(
        [
            *RN50,
            "loadtest",
            "--out",
            str(served_dir),
            "--url",
            server.url,
            "--concurrency",
            "1,4",
            "--requests",
            "24",
            "--count",
            "8",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        env=os.environ | {"COLUMNS": "200"},
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Load test: PASS — 48 answers from resnet50" in result.stdout
    data = json.loads((served_dir / "loadtest.json").read_text())
    assert data["passed"] and data["precision"] == "int8" and data["model"]["artifact"] == "onnx-int8-onnxruntime-cpu"
    one, four = data["levels"]
    assert one["requests"] == four["requests"] == 24 and one["errors"] == four["errors"] == 0
    assert (
        sum(b * n for b, n in map(lambda kv: (int(kv[0]), kv[1]), four["batches"].items())) == 24
    )  # every image, once
    assert max(int(b) for b in four["batches"]) > 1  # four clients inside a 100 ms window: batched together
    assert one["latency"]["p99_ms"] >= one["latency"]["median_ms"] > 0
    assert data["overall"]["samples"] == 48 and data["overall"]["cosine_min"] >= 0.95
    assert (served_dir / "loadtest.png").is_file() and "Load test on Triton Inference Server" in (
        served_dir / "loadtest.md"
    ).read_text()
    from rn50.artifacts import WorkDir
    from rn50.reports import workdir_report

    workdir_report.write(WorkDir(served_dir))
    assert "Load test: PASS" in (served_dir / "report.md").read_text()

    # Judged as FP32, the INT8 answers are wrong: one wrong answer fails the run (over gRPC this time).
    strict = subprocess.run(
        [
            *RN50,
            "loadtest",
            "--out",
            str(served_dir),
            "--url",
            f"127.0.0.1:{server.grpc}",
            "--protocol",
            "grpc",
            "--concurrency",
            "2",
            "--requests",
            "6",
            "--count",
            "4",
            "--precision",
            "fp32",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert strict.returncode == 1, strict.stdout + strict.stderr
    assert "wrong answer(s)" in strict.stderr and "Traceback" not in strict.stderr
    assert json.loads((served_dir / "loadtest.json").read_text())["levels"][0]["wrong"] == 6


@needs_triton
def test_loadtest_refuses_a_reference_from_another_work_directory(server: Server, tiny_dir: Path) -> None:
    one_line_error(
        cli.invoke(app, ["loadtest", "--out", str(tiny_dir), "--url", server.url, "--requests", "1"]),
        2,
        "the served onnx-int8-onnxruntime-cpu (sha256",
        "is not an artifact of",
    )


@needs_triton
def test_loadtest_without_a_server_is_one_line(served_dir: Path) -> None:
    port = free_ports(1)[0]
    one_line_error(
        cli.invoke(app, ["loadtest", "--out", str(served_dir), "--url", f"127.0.0.1:{port}", "--requests", "1"]),
        2,
        f"no Triton server answers at 127.0.0.1:{port}",
    )


@needs_triton
def test_loadtest_names_what_answers_instead_of_rn50s_model(server: Server, served_dir: Path) -> None:
    """A plain web server on the port is said to be one (not "a Triton server that is not live"); a wrong
    --model-name is told the models the server has."""
    import http.server
    import threading

    web = http.server.ThreadingHTTPServer(("127.0.0.1", 0), http.server.SimpleHTTPRequestHandler)
    threading.Thread(target=web.serve_forever, daemon=True).start()
    try:
        url = f"127.0.0.1:{web.server_address[1]}"
        one_line_error(
            cli.invoke(app, ["loadtest", "--out", str(served_dir), "--url", url, "--requests", "1"]),
            2,
            f"the server at {url} is not a Triton server",
            "--url the HTTP port rn50 serve printed",
        )
    finally:
        web.shutdown()
    one_line_error(
        cli.invoke(
            app,
            ["loadtest", "--out", str(served_dir), "--url", server.url, "--requests", "1", "--model-name", "nope"],
        ),
        2,
        "model 'nope' is not ready on this server (it has: resnet50)",
    )


@needs_triton
def test_bad_requests_get_their_own_error_and_the_server_keeps_serving(server: Server) -> None:
    x = crops(4)
    first = infer(server.url, x[:1])
    assert first.shape == (1, 1000) and np.isfinite(first).all()
    assert "unexpected inference input 'image'" in error_of(server.url, x[:1], name="image")
    assert "unexpected shape for input 'input'" in error_of(server.url, x[:1, :, :200])
    assert "data-type is 'FP64'" in error_of(server.url, x[:1].astype(np.float64), datatype="FP64")
    assert "batch-size must be <= 8" in error_of(server.url, np.concatenate([x, x, x[:1]]))
    nan = x[:1].copy()
    nan[0, 0, 0, 0] = np.nan
    status, message = refusal_of(server.url, nan)
    assert "1 NaN/Inf value(s)" in message and status == "400"  # the request's fault: a client error
    import urllib.error
    import urllib.request

    infer_url = f"http://{server.url}/v2/models/resnet50/infer"
    for body in (b"{not json", b'{"inputs": [{"name": "input", "shape": [1, 3, 224, 224], "datatype": "FP32",'):
        request = urllib.request.Request(infer_url, data=body, headers={"Content-Type": "application/json"})
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(request, timeout=30)
        # Triton parses the body before any model sees it and answers a parse error 500; rn50's HTTP front makes it
        # the client error it is: refused with Triton's reason, the server unhurt.
        assert refused.value.code == 400, (body, refused.value.code)
        assert "parse" in refused.value.read().decode().lower()
    # Over the limit (32 MB by default): refused from the Content-Length alone, before a byte of the body is read.
    host, port = server.url.split(":")
    for head, code in (
        (f"Content-Length: {40 * 2**20}\r\nContent-Type: application/json", b" 413 "),
        ("Transfer-Encoding: chunked\r\nContent-Type: application/json", b" 411 "),
    ):
        with socket.create_connection((host, int(port)), timeout=30) as raw:
            raw.sendall(f"POST /v2/models/resnet50/infer HTTP/1.1\r\nHost: x\r\n{head}\r\n\r\n".encode())
            answer = raw.recv(4096)
        assert code in answer.split(b"\r\n")[0] and b'"error"' in answer, answer

    # A NaN request sent with good ones lands in their batch (100 ms window); only it gets an error.
    results: dict[int, object] = {}

    def send(i: int, arr: np.ndarray) -> None:
        try:
            results[i] = infer(server.url, arr)
        except Exception as e:  # the server's error response
            results[i] = str(e)

    threads = [threading.Thread(target=send, args=(i, a)) for i, a in enumerate([x[0:1], nan, x[1:2], x[2:3]])]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert "NaN/Inf" in str(results[1])
    for i, j in ((0, 0), (2, 1), (3, 2)):
        assert isinstance(results[i], np.ndarray), results[i]
        single = infer(server.url, x[j : j + 1])
        assert np.allclose(results[i], single, atol=1e-4)  # the same answer as when sent alone

    import tritonclient.grpc as grpcclient  # the gRPC endpoint answers the same

    client = grpcclient.InferenceServerClient(f"127.0.0.1:{server.grpc}")
    request = grpcclient.InferInput("input", [1, 3, 224, 224], "FP32")
    request.set_data_from_numpy(x[:1])
    assert np.allclose(client.infer("resnet50", [request]).as_numpy("logits"), first, atol=1e-4)
    client.close()
    import urllib.request

    with urllib.request.urlopen(f"http://{server.url}/v2/health/ready", timeout=10) as ready:
        assert ready.status == 200
    with urllib.request.urlopen(f"http://127.0.0.1:{server.metrics}/metrics", timeout=10) as metrics:
        text = metrics.read().decode()
    assert (
        'nv_inference_request_success{model="resnet50"' in text
        and 'nv_inference_request_failure{model="resnet50"' in text
    )
    assert server.proc.poll() is None


@needs_triton
def test_a_client_that_disconnects_mid_request_does_not_hurt_the_server(server: Server) -> None:
    import tritonclient.http as httpclient

    x = crops(1)
    body, header_length = httpclient.InferenceServerClient.generate_request_body([_input(httpclient, x)])
    head = (
        f"POST /v2/models/resnet50/infer HTTP/1.1\r\nHost: {server.url}\r\nContent-Type: application/octet-stream\r\n"
        f"Inference-Header-Content-Length: {header_length}\r\nContent-Length: {len(body)}\r\n\r\n"
    ).encode()
    for cut in (len(body) // 2, len(body)):  # gone while sending the image; gone before the answer
        with socket.create_connection(("127.0.0.1", server.http)) as s:
            s.sendall(head + body[:cut])
        time.sleep(0.3)
    y = infer(server.url, x)
    assert y.shape == (1, 1000) and server.proc.poll() is None


def _input(httpclient: Any, x: np.ndarray) -> Any:
    request = httpclient.InferInput("input", list(x.shape), "FP32")
    request.set_data_from_numpy(x)
    return request


@needs_triton
def test_sigterm_under_load_answers_the_requests_in_flight_then_exits(served_dir: Path) -> None:
    s = Server(served_dir, "--artifact", "onnx-int8-onnxruntime-cpu", "--queue-delay-us", "300000")
    x = crops(4)
    answers: list[object] = []

    def send(i: int) -> None:
        try:
            answers.append(infer(s.url, x[i : i + 1]))
        except Exception as e:  # noqa: BLE001 — recorded, and the test fails on it
            answers.append(e)

    threads = [threading.Thread(target=send, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    time.sleep(0.1)  # the four wait in Triton's 300 ms batching window
    s.proc.send_signal(signal.SIGTERM)
    for t in threads:
        t.join(timeout=60)
    code = s.proc.wait(timeout=60)
    assert [type(a).__name__ for a in answers] == ["ndarray"] * 4, answers
    assert code == 130, "".join(s.lines)
    assert "stopped: Triton answered the requests in flight" in "".join(s.lines)
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", s.http), timeout=2).close()


def _processes_with(needle: str) -> list[int]:
    """PIDs whose command line contains ``needle``."""
    pids = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                if needle in (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace"):
                    pids.append(int(proc.name))
            except OSError:
                pass
    return pids


@needs_triton
def test_kill_9_of_serve_fails_the_load_test_and_leaves_no_process_or_folder(served_dir: Path, tmp_path: Path) -> None:
    """A server killed outright under load: the load test fails (exit 1) with the answers it had, Triton's Python
    stubs end within seconds, Triton itself within its exit timeout, and the next rn50 serve removes the scratch
    folder the killed one left."""
    import tempfile

    from rn50.serving.server import EXIT_TIMEOUT_S, OWNER_FILE, SCRATCH_PREFIX

    work = Path(shutil.copytree(served_dir, tmp_path / "work"))
    s = Server(work, "--artifact", "onnx-int8-onnxruntime-cpu")
    scratch = [
        f
        for f in Path(tempfile.gettempdir()).glob(SCRATCH_PREFIX + "*")
        if (f / OWNER_FILE).read_text() == str(s.proc.pid)
    ]
    assert len(scratch) == 1
    stubs = [
        p
        for p in _processes_with("triton_python_backend_stub")
        if str(scratch[0]) in Path(f"/proc/{p}/cmdline").read_text(errors="replace")
    ]
    load = subprocess.Popen(
        [
            *RN50,
            "loadtest",
            "--out",
            str(work),
            "--url",
            s.url,
            "--concurrency",
            "2",
            "--duration",
            "60",
            "--count",
            "4",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    baseline, deadline = _inferences(s.metrics), time.monotonic() + 120
    while time.monotonic() < deadline and _inferences(s.metrics) < baseline + 4:
        time.sleep(0.5)
    assert _inferences(s.metrics) >= baseline + 4, "the load test did not start"
    s.proc.kill()  # SIGKILL: no handler runs in rn50 serve
    s.proc.wait(timeout=10)
    killed = time.monotonic()
    out, err = load.communicate(timeout=120)
    assert time.monotonic() - killed < 30  # the load test ends when its server is gone, not at the end of --duration
    assert load.returncode == 1, out + err
    assert "server stopped answering" in err or "failed request" in err, err
    assert "Traceback" not in err and "unexpected" not in err
    data = json.loads((work / "loadtest.json").read_text())
    assert (
        not data["passed"] and data["levels"][0]["requests"] > 0
    )  # the answers before the kill were kept, and checked
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline and any(Path(f"/proc/{p}").exists() for p in stubs):
        time.sleep(0.5)
    assert stubs and not any(Path(f"/proc/{p}").exists() for p in stubs), "Triton's Python stubs outlived rn50 serve"
    deadline = time.monotonic() + EXIT_TIMEOUT_S + 15
    while time.monotonic() < deadline and _listening(s.http):
        time.sleep(0.5)
    assert not _listening(s.http), "Triton still listens after rn50 serve was killed"
    # What SIGKILL left is removed by the next rn50 serve: this one's, or one another test worker started meanwhile
    # (any rn50 serve removes the folders of owners that no longer run), so it is not asserted present here.
    again = Server(work, "--artifact", "onnx-int8-onnxruntime-cpu")
    try:
        assert not scratch[0].exists()
    finally:
        again.stop()


def _inferences(metrics_port: int) -> float:
    import urllib.request

    try:
        text = urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=2).read().decode()
    except OSError:
        return 0.0
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith("nv_inference_count{"))


def _listening(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
        return True
    except OSError:
        return False


@needs_triton
def test_a_work_directory_with_a_space_and_an_accent_is_served(served_dir: Path, tmp_path: Path) -> None:
    work = tmp_path / "mes modèles" / "rn50 out"
    work.parent.mkdir()
    shutil.copytree(served_dir, work)
    s = Server(work, "--artifact", "onnx-int8-onnxruntime-cpu")
    try:
        y = infer(s.url, crops(1))
        assert y.shape == (1, 1000) and np.isfinite(y).all()
    finally:
        assert s.stop() == 130, "".join(s.lines)
    assert (work / "triton-resnet50.log").is_file()  # Triton's log, kept in the work directory


@needs_triton
def test_pytorchs_int8_package_is_served_and_every_answer_checked(served_dir: Path, tmp_path: Path) -> None:
    """The README's work directory holds PyTorch's INT8 AOTInductor package (the pipeline's pt2 step): rn50 serve
    runs it with rn50's runner in Triton's Python backend, and the load test checks every answer against PyTorch."""
    work = Path(shutil.copytree(served_dir, tmp_path / "work"))
    s = Server(work, "--artifact", "pt2-int8-cpu")
    try:
        args = ["--url", s.url, "--concurrency", "1,2", "--requests", "8", "--count", "4"]
        done = subprocess.run(
            [*RN50, "loadtest", "--out", str(work), *args], capture_output=True, text=True, timeout=300
        )
    finally:
        assert s.stop() == 130, "".join(s.lines)
    assert done.returncode == 0, done.stdout + done.stderr
    data = json.loads((work / "loadtest.json").read_text())
    assert data["passed"] and data["precision"] == "int8" and data["model"]["artifact"] == "pt2-int8-cpu"
    assert [(level["errors"], level["wrong"]) for level in data["levels"]] == [(0, 0), (0, 0)]
    assert data["overall"]["samples"] == 16 and data["overall"]["cosine_min"] >= 0.95
    assert any("aoti-cpu" in line for line in s.lines)


# --- rn50 tune ---------------------------------------------------------------------------------------------------


def _tune(work: Path, *args: str) -> subprocess.CompletedProcess[str]:
    http, grpc, metrics = free_ports(3)
    ports = ["--port", str(http), "--grpc-port", str(grpc), "--metrics-port", str(metrics)]
    return subprocess.run(
        [*RN50, "tune", "--out", str(work), "--artifact", "onnx-int8-onnxruntime-cpu", *ports, *args],
        capture_output=True,
        text=True,
        timeout=600,
        env=os.environ | {"COLUMNS": "200"},
    )


@needs_triton
def test_tune_measures_configurations_on_a_real_server_and_triton_repo_writes_the_best(
    served_dir: Path, tmp_path: Path
) -> None:
    from rn50.serving.triton_config import parse

    work = Path(shutil.copytree(served_dir, tmp_path / "work"))
    # A budget no load can break (a minute), so the verdict does not hang on the machine's speed at that moment.
    done = _tune(work, "--concurrency", "2", "--requests", "16", "--max-points", "3", "--latency-budget-ms", "60000")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Tune: serve with" in done.stdout
    data = json.loads((work / "tune.json").read_text())
    assert len(data["points"]) == 3 and data["stopped"] == "--max-points 3 reached"
    assert data["points"][0]["config"] == data["default"]  # the search starts at rn50 serve's configuration
    assert data["answers_checked"] == data["answers_received"] >= 3 * 16  # every answer received was checked
    assert all(p["status"] == "ok" and p["wrong"] == 0 and p["p99_ms"] > 0 for p in data["points"])
    fastest = max(data["points"], key=lambda p: p["throughput"])
    default = data["points"][0]
    best = default if fastest["throughput"] < default["throughput"] * 1.02 else fastest  # within the noise: serve's
    assert data["best"] == best["config"]
    assert (work / "tune.png").is_file() and "Serving configuration (rn50 tune)" in (work / "tune.md").read_text()

    repo = tmp_path / "repo"
    written = cli.invoke(app, ["triton-repo", "--out", str(work), "--repo", str(repo), "--from-tune"])
    assert written.exit_code == 0, written.output
    (folder,) = [p for p in repo.iterdir() if p.is_dir()]
    cfg = parse((folder / "config.pbtxt").read_text())  # Triton's own ModelConfig message
    assert cfg.max_batch_size == best["config"]["max_batch"]
    assert cfg.instance_group[0].count == best["config"]["instances"]
    assert cfg.dynamic_batching.max_queue_delay_microseconds == best["config"]["queue_delay_us"]
    assert cfg.parameters["intra_op_thread_count"].string_value == str(best["config"]["threads"])


@needs_triton
def test_tune_with_a_budget_no_configuration_keeps_exits_1_naming_the_closest(served_dir: Path, tmp_path: Path) -> None:
    work = Path(shutil.copytree(served_dir, tmp_path / "work"))
    done = _tune(work, "--concurrency", "1", "--requests", "8", "--max-points", "1", "--latency-budget-ms", "0.001")
    assert done.returncode == 1, done.stdout + done.stderr
    assert "no configuration kept p99 ≤ 0.001 ms" in done.stderr and "the closest" in done.stderr
    assert "Traceback" not in done.stderr
    assert json.loads((work / "tune.json").read_text())["best"] is None
    refused = cli.invoke(app, ["triton-repo", "--out", str(work), "--from-tune"])
    one_line_error(refused, 2, "found no configuration within its budget")


@needs_triton
@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--concurrency", "0"], "--concurrency 0 must be >= 1"),
        (["--max-minutes", "0"], "--max-minutes 0.0 must be > 0"),
        (["--latency-budget-ms", "-5"], "--latency-budget-ms -5.0 must be > 0"),
        (["--artifact", "onnx-int4"], "no onnx-int4 artifact"),
    ],
)
def test_tune_refuses_bad_options_before_starting(tiny: Path, args: list[str], needle: str) -> None:
    one_line_error(cli.invoke(app, ["tune", "--out", str(tiny), *args]), 2, needle)
    assert not (tiny / "tune.json").exists()


def test_triton_repo_from_tune_refuses_what_it_would_override(tiny: Path) -> None:
    one_line_error(cli.invoke(app, ["triton-repo", "--out", str(tiny), "--from-tune"]), 2, "no tune.json", "rn50 tune")
    done = cli.invoke(app, ["triton-repo", "--out", str(tiny), "--from-tune", "--max-batch-size", "4"])
    one_line_error(done, 2, "--from-tune sets the artifact, batching")


def test_loadtest_and_tune_results_read_back_as_the_types_they_were_written_from() -> None:
    """loadtest.json and tune.json are read back into their typed results (report.md renders those, as the command
    did), not into dictionaries each reader interprets."""
    import json

    from rn50.metrics import Thresholds, compare
    from rn50.results import loadtest_results, tune_results
    from rn50.runtimes.timing import summarize
    from rn50.serving.clients import Level, ServedModelInfo

    logits = np.random.default_rng(0).standard_normal((4, 10)).astype(np.float32)
    metrics = compare(logits, logits * 1.001)
    level = Level(2, 40, 1.5, 26.7, summarize([3.0, 4.0, 5.0], batch=1), {1: 10, 4: 7}, 0, (), 1, ("x",), metrics)
    report = loadtest_results.LoadtestReport(
        "http://localhost:8000",
        "http",
        ServedModelInfo("resnet50", 8, "fp32", "onnx-fp32", "ab" * 32),
        "fp32",
        Thresholds(min_cosine=0.99),
        "5 s",
        "8 crops",
        (level,),
        metrics,
        (),
        {"cpu": "x"},
    )
    again = loadtest_results.from_dict(json.loads(json.dumps(loadtest_results.to_dict(report))))
    assert again == report and again.levels[0].formed_batch == level.formed_batch
    config = tune_results.Config(1, 8, 1000, 2)
    point = tune_results.Point(config, "ok", 30.0, 10.0, 12.0, 15.0, 2.5, 100, 100)
    tuned = tune_results.TuneReport(
        "onnx-fp32", "onnxruntime-cpu", "fp32", "ab" * 32, 4, 100, 50.0, config, (point,), "converged", {}, 12.0
    )
    back = tune_results.from_dict(json.loads(json.dumps(tune_results.to_dict(tuned))))
    assert back == tuned and back.best == point

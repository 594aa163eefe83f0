import importlib.util
from pathlib import Path

import numpy as np
import pytest

from rn50.errors import EnvironmentProblem, UsageError
from rn50.metrics import compare
from rn50.runtimes.ort_runner import OnnxRuntimeRunner
from rn50.runtimes.torch_runner import TorchRunner
from rn50.samples import sample_crops
from rn50.weights import LoadedModel


def _ort_providers() -> list[str]:
    import onnxruntime

    return onnxruntime.get_available_providers()


def _cuda() -> bool:
    import torch

    return torch.cuda.is_available()


@pytest.fixture(scope="module")
def feed() -> dict[str, np.ndarray]:
    return {"input": sample_crops(4, split="evaluation")}


def test_onnxruntime_cpu_matches_torch(fp32_onnx: Path, seeded50: LoadedModel, feed: dict) -> None:
    with OnnxRuntimeRunner(fp32_onnx, threads=2) as ort, TorchRunner(seeded50.model) as ref:
        assert ort.device == "CPUExecutionProvider" and ref.device == "cpu"
        assert [s.name for s in ort.input_specs()] == ["input"]
        m = compare(ort.infer(feed)["logits"], ref.infer(feed)["logits"])
    assert m.cosine_min > 0.99999 and m.max_abs < 1e-3 and m.top1_agreement == 1.0


def test_feed_errors_are_clear(fp32_onnx: Path, feed: dict) -> None:
    x = feed["input"]
    with OnnxRuntimeRunner(fp32_onnx) as ort:
        with pytest.raises(UsageError, match=r"missing input\(s\) \['input'\].*unexpected input\(s\) \['images'\]"):
            ort.infer({"images": x})
        with pytest.raises(UsageError, match="dtype float64, expected float32"):
            ort.infer({"input": x.astype(np.float64)})
        with pytest.raises(UsageError, match="looks like NHWC"):
            ort.infer({"input": np.ascontiguousarray(x.transpose(0, 2, 3, 1))})
        with pytest.raises(UsageError, match="expected rank 4"):
            ort.infer({"input": x[0]})


def test_runner_needs_its_context(fp32_onnx: Path, feed: dict) -> None:
    with pytest.raises(RuntimeError, match="context manager"):
        OnnxRuntimeRunner(fp32_onnx).infer(feed)


def test_bad_runner_arguments(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="unknown ONNX Runtime provider"):
        OnnxRuntimeRunner(tmp_path / "m.onnx", provider="rocm")
    with pytest.raises(UsageError, match="ONNX file not found"):
        OnnxRuntimeRunner(tmp_path / "m.onnx").__enter__()
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"nope")
    with pytest.raises(UsageError, match="cannot load"):
        OnnxRuntimeRunner(bad).__enter__()


@pytest.mark.skipif("CUDAExecutionProvider" in _ort_providers(), reason="this onnxruntime has the CUDA provider")
def test_cuda_provider_missing_is_an_error_not_a_cpu_fallback(fp32_onnx: Path) -> None:
    with pytest.raises(EnvironmentProblem, match="no CUDAExecutionProvider"):
        OnnxRuntimeRunner(fp32_onnx, provider="cuda").__enter__()


@pytest.mark.gpu
@pytest.mark.skipif(
    "CUDAExecutionProvider" not in _ort_providers() or not _cuda(), reason="needs onnxruntime-gpu and a CUDA GPU"
)
def test_onnxruntime_cuda_matches_torch_cuda(fp32_onnx: Path, seeded50: LoadedModel, feed: dict) -> None:
    with OnnxRuntimeRunner(fp32_onnx, provider="cuda") as ort, TorchRunner(seeded50.model, device="cuda") as ref:
        assert ort.device == "CUDAExecutionProvider"
        m = compare(ort.infer(feed)["logits"], ref.infer(feed)["logits"])
    assert m.cosine_min > 0.99999


@pytest.mark.gpu
@pytest.mark.skipif(not _cuda(), reason="needs a CUDA GPU")
def test_torch_cuda_reference_has_tf32_off(seeded50: LoadedModel) -> None:
    import torch

    with TorchRunner(seeded50.model, device="cuda"):
        assert not torch.backends.cuda.matmul.allow_tf32 and not torch.backends.cudnn.allow_tf32
    seeded50.model.to("cpu")


def test_tensorrt_stubs_are_not_mistaken_for_tensorrt() -> None:
    from rn50.runtimes.trt_env import import_tensorrt, tensorrt_reason

    if importlib.util.find_spec("tensorrt") is None or tensorrt_reason():
        with pytest.raises(EnvironmentProblem, match="TensorRT"):
            import_tensorrt()
    else:
        assert hasattr(import_tensorrt(), "Builder")


def test_openvino_runtimes_are_skipped_with_the_reason_where_openvino_is_missing(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import importlib.util

    from rn50.runtimes import registry

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "openvino" else real(name, *a))
    for runtime in ("openvino-cpu", "openvino-cpu-bf16"):
        assert registry.unavailable_reason(runtime) == "openvino is not installed (pip install 'rn50[openvino]')"
    assert (
        registry.reads("openvino-cpu") == ("onnx", "ir")
        and registry.result_precision("openvino-cpu-bf16", "int8") is None
    )


def test_a_model_onnxruntime_cannot_run_is_a_failed_check_naming_the_runtime(tmp_path: Path) -> None:
    """ONNX Runtime's own execution errors (e.g. the CUDA provider refusing a layout) become rn50's CheckFailed: parity
    and profile mark that runtime's row as an error and go on with the others."""
    import onnx
    from onnx import TensorProto, helper

    from rn50.errors import CheckFailed

    graph = helper.make_graph(
        [helper.make_node("Reshape", ["input", "shape"], ["logits"])],
        "bad",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", 3, 224, 224])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, None)],
        [helper.make_tensor("shape", TensorProto.INT64, [2], [7, 1000])],
    )
    path = tmp_path / "bad.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8), path)
    with OnnxRuntimeRunner(path, label="onnxruntime-cpu · bad") as ort, pytest.raises(CheckFailed) as caught:
        ort.infer({"input": np.zeros((1, 3, 224, 224), np.float32)})
    assert caught.value.message.startswith(
        "onnxruntime-cpu · bad: ONNX Runtime could not run bad.onnx on CPUExecutionProvider: "
    )
    assert "\n" not in caught.value.message and "Reshape" in caught.value.message


def test_a_file_onnxruntime_cannot_capture_in_a_cuda_graph_is_a_skipped_mode(
    fp32_onnx: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Found on an H100: ONNX Runtime refuses graph capture for the onnxruntime-cpu Q/DQ file (the CUDA provider leaves
    some of its nodes to the CPU). That mode is skipped with the reason (profile keeps the file's other rows); a plain
    device session that fails stays an error."""
    import torch

    from rn50.errors import EnvironmentProblem

    refusal = (
        "[ONNXRuntimeError] : 1 : FAIL : This session cannot use the graph capture feature as requested by the user "
        "as all compute graph nodes have not been partitioned to the CUDAExecutionProvider"
    )

    def session(
        self: OnnxRuntimeRunner, options: dict | None = None
    ) -> None:  # as _session raises it, from ONNX Runtime's error
        raise UsageError(
            f"ONNX Runtime cannot load {self.model_path}: {refusal}", fix="check that the file is a valid ONNX model"
        ) from RuntimeError(refusal)

    monkeypatch.setattr(torch.cuda, "Stream", lambda: type("Stream", (), {"cuda_stream": 0})())
    monkeypatch.setattr(OnnxRuntimeRunner, "_session", session)
    runner = OnnxRuntimeRunner(fp32_onnx, provider="cuda")
    feed = {"input": np.zeros((1, 3, 224, 224), np.float32)}
    with pytest.raises(EnvironmentProblem) as caught:
        runner.device_bench(feed, cuda_graph=True)
    assert caught.value.problem == f"no CUDA graph for {fp32_onnx.name}: {refusal}"
    assert "--no-cuda-graphs" in (caught.value.fix or "")
    with pytest.raises(UsageError, match="graph capture"):
        runner.device_bench(feed, cuda_graph=False)


def test_the_readme_lists_every_runtime_of_the_table() -> None:
    """The README's runtime list is the runtime table, row for row (it cannot drift from the code)."""
    from rn50.runtimes.registry import RUNTIME_TABLE

    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    listed = readme.split("<!-- runtimes: generated from RUNTIME_TABLE -->\n", 1)[1].split("<!-- /runtimes -->", 1)[0]
    rows = ["| runtime | what | reads | device |", "| --- | --- | --- | --- |"]
    rows += [f"| `{s.name}` | {s.summary} | {', '.join(s.reads)} | {s.device} |" for s in RUNTIME_TABLE.values()]
    assert listed.strip() == "\n".join(rows)


def test_a_runtime_is_one_row_of_the_table(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """A toy runtime registered here alone (ONNX Runtime's CPU provider under another name) is planned by parity and
    profile, runs and is compared, is listed by doctor and appears in the CLI's help, with no other edit."""
    import onnx
    from tiny import small_convnet
    from typer.testing import CliRunner

    from rn50 import cli
    from rn50.artifacts import Artifact, WorkDir, sha256_file
    from rn50.commands.doctor import check_runtimes
    from rn50.evaluation import comparison, pairs
    from rn50.feeds import FeedSet
    from rn50.metrics import thresholds_for
    from rn50.results.profile_results import Settings
    from rn50.runtimes import registry
    from rn50.runtimes.ort_runner import OnnxRuntimeRunner

    def runner(target: registry.Pair, threads: int | None, _model: object) -> OnnxRuntimeRunner:
        assert target.path is not None
        return OnnxRuntimeRunner(target.path, threads=threads, label=target.label)

    toy = registry.RuntimeSpec("toy-cpu", "a toy runtime registered by a test", ("onnx",), "cpu", lambda: None, runner)
    monkeypatch.setitem(registry.RUNTIME_TABLE, toy.name, toy)
    root = tmp_path / "work"
    root.mkdir()
    onnx.save(small_convnet(), str(root / "small.onnx"))
    workdir = WorkDir(root)
    workdir.record(Artifact("onnx-fp32", "small.onnx", "onnx", "fp32", sha256_file(root / "small.onnx"), None, {}, {}))

    planned, _ = pairs.parity_pairs(workdir, runtimes=["onnxruntime-cpu", "toy-cpu"])
    assert [t.runtime for t in planned] == ["onnxruntime-cpu", "toy-cpu"]
    profiled, _ = pairs.profile_pairs(workdir, Settings(batches=(1,)), artifacts=["onnx-fp32"])
    assert "toy-cpu" in {t.runtime for t in profiled}
    feeds = FeedSet(
        "arrays", "noise", np.random.default_rng(0).standard_normal((4, 3, 8, 8)).astype(np.float32), "noise"
    )
    runs, files = comparison.run_all(planned, feeds, 4, threads=1, strict_runtimes=True, say=lambda _m: None)
    assert runs[0].logits is not None
    results, _ = comparison.compare_all(runs, runs[0].logits, files, None, thresholds=thresholds_for)
    assert [(r.runtime, r.status) for r in results] == [("onnxruntime-cpu", "pass"), ("toy-cpu", "pass")]
    assert {"runtime toy-cpu": "ok"} == {c.name: c.status for c in check_runtimes() if c.name == "runtime toy-cpu"}
    for command in ("parity", "profile"):
        help_text = CliRunner().invoke(cli.build_app(), [command, "--help"], env={"COLUMNS": "200"}).output
        assert "toy-cpu" in help_text, help_text


def test_an_artifact_kind_is_one_row_of_the_table(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """A toy kind of artifact (an ONNX file under another suffix) and a runtime that reads it, registered here alone:
    parity plans it, triton-repo serves it where its row says, verify checks its sidecar and reports a stray file of
    its suffix — with no other edit."""
    import json

    import onnx
    from tiny import small_convnet
    from typer.testing import CliRunner

    from rn50 import cli
    from rn50.artifacts import Artifact, WorkDir, sha256_file
    from rn50.evaluation import pairs
    from rn50.runtimes import kinds, registry
    from rn50.runtimes.model_io import onnx_io
    from rn50.runtimes.ort_runner import OnnxRuntimeRunner

    def runner(target: registry.Pair, threads: int | None, _model: object) -> OnnxRuntimeRunner:
        assert target.path is not None
        return OnnxRuntimeRunner(target.path, threads=threads, label=target.label)

    def sidecar(path: Path, _digest: str) -> str | None:
        return "its sidecar is missing" if not path.with_suffix(".json").exists() else None

    toy = kinds.ModelKind(
        "toy",
        ".toy",
        onnx_io,
        served={"*": (kinds.Placement("cpu", "onnxruntime", "model.onnx"),)},
        sidecar_problem=sidecar,
    )
    monkeypatch.setitem(kinds.KINDS, "toy", toy)
    reader = registry.RuntimeSpec("toy-cpu", "reads toy files", ("toy",), "cpu", lambda: None, runner)
    monkeypatch.setitem(registry.RUNTIME_TABLE, reader.name, reader)
    root = tmp_path / "work"
    root.mkdir()
    onnx.save(small_convnet(), str(root / "small.toy"))
    (root / "small.json").write_text("{}")
    WorkDir(root).record(
        Artifact("toy-fp32", "small.toy", "toy", "fp32", sha256_file(root / "small.toy"), None, {}, {})
    )

    planned, _ = pairs.parity_pairs(WorkDir(root), runtimes=["onnxruntime-cpu", "toy-cpu"])
    assert [(t.runtime, t.artifact) for t in planned] == [("toy-cpu", "toy-fp32")]
    app = cli.build_app()
    done = CliRunner().invoke(app, ["triton-repo", "--out", str(root), "--json"])
    assert done.exit_code == 0, done.output
    assert [m["name"] for m in json.loads(done.stdout)["models"]] == ["toy-fp32-cpu"], done.stdout
    (root / "small.json").unlink()
    (root / "stray.toy").write_bytes(b"")
    done = CliRunner().invoke(app, ["verify", "--out", str(root), "--json"])
    findings = {f["path"]: (f["status"], f["detail"]) for f in json.loads(done.stdout)["findings"]}
    assert findings["small.toy"] == ("bad-sidecar", "its sidecar is missing")
    assert findings["stray.toy"][0] == "unrecorded"


def test_the_torch_runner_takes_threads_and_restores_the_process_count() -> None:
    """--threads reaches PyTorch through its runner, as it reaches every CPU runtime; nothing process-wide stays."""
    import torch
    from tiny import tiny_net

    from rn50.runtimes.torch_runner import TorchRunner

    before = torch.get_num_threads()
    with TorchRunner(tiny_net(), threads=1):
        assert torch.get_num_threads() == 1
    assert torch.get_num_threads() == before


def test_the_depth_help_names_the_depths_the_exporter_builds() -> None:
    from rn50.commands.options import _DEPTH_HELP
    from rn50.exporter.config import DEPTHS

    assert _DEPTH_HELP == f"ResNet depth: {', '.join(map(str, DEPTHS))}."


def test_compiled_pytorch_needs_a_cpp_compiler_and_says_so(monkeypatch: pytest.MonkeyPatch) -> None:
    """Inductor builds C++ for the CPU: without a compiler the runtime is unavailable with the fix (doctor lists it)."""
    import shutil

    from rn50.runtimes.registry import unavailable_reason

    monkeypatch.delenv("CXX", raising=False)
    monkeypatch.setattr(shutil, "which", lambda _name: None)
    reason = unavailable_reason("torch-compile-cpu")
    assert reason is not None and "needs a C++ compiler" in reason and "apt install g++" in reason
    monkeypatch.setenv("CXX", "my-cxx")
    assert "my-cxx not found" in (unavailable_reason("torch-compile-cpu") or "")

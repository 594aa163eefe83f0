"""The TensorRT stand-in itself: it offers only TensorRT's API (checked against tensorrt-stubs) and behaves as
NVIDIA documents. These tests keep the double honest; test_trt_path.py runs rn50's TensorRT code on it."""

from __future__ import annotations

import ast
import importlib.util
import inspect
import json
import re
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from rn50.runtimes.trt_plan import REMOVED_APIS

STUBS = importlib.util.find_spec("tensorrt_bindings")
needs_stubs = pytest.mark.skipif(STUBS is None, reason="needs tensorrt-stubs (pip install --no-deps tensorrt-stubs)")


def _stub_classes() -> dict[str, dict[str, list[list[str]]]]:
    """class -> member -> parameter-name lists (one per overload; [] for attributes), from tensorrt-stubs."""
    assert STUBS is not None and STUBS.submodule_search_locations
    text = (Path(list(STUBS.submodule_search_locations)[0]) / "tensorrt.pyi").read_text()
    text = re.sub(r"(?<=[(,] )in:", "in_:", text)  # the stubs' own slips (see test_tensorrt._patched_stubs)
    text = text.replace("power: Weights = None, channel_axis: int)", "power: Weights = None, channel_axis: int = ...)")
    out: dict[str, dict[str, list[list[str]]]] = {}

    def walk(body: list[ast.stmt], prefix: str) -> None:
        for node in body:
            if isinstance(node, ast.ClassDef):
                if prefix:
                    out[prefix[:-1]].setdefault(node.name, []).append([])  # a nested class is a member too
                members = out.setdefault(prefix + node.name, {})
                for item in node.body:
                    if isinstance(item, ast.FunctionDef):
                        members.setdefault(item.name, []).append(
                            [a.arg for a in item.args.args[1:] + item.args.kwonlyargs]
                        )
                    elif isinstance(item, ast.AnnAssign) and isinstance(item.target, ast.Name):
                        members.setdefault(item.target.id, []).append([])
                walk(node.body, prefix + node.name + ".")
            elif isinstance(node, ast.FunctionDef):
                out.setdefault("<module>", {}).setdefault(node.name, []).append([a.arg for a in node.args.args])

    walk(ast.parse(text).body, "")
    out.setdefault("<module>", {})["nptype"] = [["trt_type"]]  # defined in tensorrt/__init__.py, not the .pyi
    return out


def _public(obj: Any) -> dict[str, Any]:
    return {k: v for k, v in vars(obj).items() if not k.startswith("_")}


@needs_stubs
def test_every_standin_name_exists_in_tensorrt_stubs_with_its_signature(trt_standin: ModuleType) -> None:
    stubs = _stub_classes()
    problems = []
    for name, obj in _public(trt_standin).items():
        if isinstance(obj, ModuleType) or name in ("annotations", "Any"):
            continue
        if inspect.isclass(obj):
            classes = [obj] + [
                c for c in vars(obj).values() if inspect.isclass(c) and c.__qualname__.startswith(obj.__name__ + ".")
            ]
            for cls in classes:
                qual = cls.__qualname__
                if qual not in stubs:
                    problems.append(f"class {qual} is not in tensorrt-stubs")
                    continue
                members = _public(cls) | dict(getattr(cls, "__members__", {}))  # enum members too
                for member, value in members.items():
                    if member not in stubs[qual]:
                        problems.append(f"{qual}.{member} is not in tensorrt-stubs")
                    elif inspect.isfunction(value):
                        params = list(inspect.signature(value).parameters)[1:]
                        if params not in stubs[qual][member]:
                            problems.append(f"{qual}.{member}{params} differs from the stubs' {stubs[qual][member]}")
        elif inspect.isfunction(obj):
            params = list(inspect.signature(obj).parameters)
            if params not in stubs["<module>"].get(name, []):
                problems.append(f"function {name}{params} is not in tensorrt-stubs")
    assert not problems, "\n".join(problems)


def test_apis_tensorrt_11_removed_are_absent(trt_standin: ModuleType) -> None:
    for owner in (
        trt_standin,
        trt_standin.BuilderFlag,
        trt_standin.IBuilderConfig,
        trt_standin.Builder,
        trt_standin.ICudaEngine,
        trt_standin.IExecutionContext,
        trt_standin.NetworkDefinitionCreationFlag,
    ):
        present = set(REMOVED_APIS) & set(dir(owner))
        assert not present, f"{owner.__name__} offers {present}"
    with pytest.raises(AttributeError):
        trt_standin.BuilderFlag.FP16  # noqa: B018 - the access is the test
    with pytest.raises(AttributeError):
        trt_standin.Builder(trt_standin.Logger()).create_builder_config().int8_calibrator  # noqa: B018


# --- crafted models ------------------------------------------------------------------------------------
def _conv_model(
    *, op: str = "Conv", zero_point: int = 0, zp_type: int = TensorProto.INT8, pair: bool = True, quantized: bool = True
) -> onnx.ModelProto:
    """input (N,3,8,8) -> [Q/DQ] -> Conv(4 filters) -> Relu -> output; per-channel weight Q/DQ when quantized."""
    w = np.random.default_rng(0).standard_normal((4, 3, 3, 3)).astype(np.float32)
    inits = [
        numpy_helper.from_array(w, "w"),
        numpy_helper.from_array(np.float32(0.05), "s"),
        helper.make_tensor("zp", zp_type, [], [zero_point]),
        numpy_helper.from_array(np.full(4, 0.01, np.float32), "ws"),
        numpy_helper.from_array(np.zeros(4, np.int8), "wzp"),
    ]
    nodes = []
    x, weight = "input", "w"
    if quantized:
        nodes += [helper.make_node("QuantizeLinear", ["input", "s", "zp"], ["xq"], name="q_in")]
        if pair:
            nodes += [helper.make_node("DequantizeLinear", ["xq", "s", "zp"], ["xdq"], name="dq_in")]
            x = "xdq"
        else:
            nodes += [helper.make_node("Relu", ["xq"], ["xdq"], name="not_a_dq")]
            x = "xdq"
        nodes += [
            helper.make_node("QuantizeLinear", ["w", "ws", "wzp"], ["wq"], name="q_w", axis=0),
            helper.make_node("DequantizeLinear", ["wq", "ws", "wzp"], ["wdq"], name="dq_w", axis=0),
        ]
        weight = "wdq"
    nodes += [
        helper.make_node(op, [x, weight], ["y"], name="conv", pads=[1, 1, 1, 1])
        if op == "Conv"
        else helper.make_node(op, [x], ["y"], name="odd"),
        helper.make_node("Relu", ["y"], ["output"], name="relu"),
    ]
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 3, 8, 8])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, ["N", 4, 8, 8])],
        inits,
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])


def _save(model: onnx.ModelProto, tmp_path: Path, name: str = "m.onnx") -> Path:
    path = tmp_path / name
    onnx.save(model, str(path))
    return path


class Log:
    def __init__(self, trt: ModuleType) -> None:
        class Recorder(trt.ILogger):
            def __init__(self) -> None:
                trt.ILogger.__init__(self)
                self.messages: list[tuple[str, str]] = []

            def log(self, severity: Any, msg: str) -> None:
                self.messages.append((severity.name, msg))

        self.logger = Recorder()

    @property
    def errors(self) -> str:
        return "\n".join(m for s, m in self.logger.messages if s == "ERROR")


def _network(trt: ModuleType, path: Path, log: Log) -> tuple[Any, Any, Any]:
    builder = trt.Builder(log.logger)
    network = builder.create_network(1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED))
    parser = trt.OnnxParser(network, log.logger)
    return builder, network, parser


@pytest.mark.parametrize(
    "changes, operator, message",
    [
        ({"op": "NonMaxSuppression"}, "NonMaxSuppression", "No importer registered for op: NonMaxSuppression"),
        ({"zero_point": 3}, "QuantizeLinear", "only supports symmetric quantization"),
        (
            {"zp_type": TensorProto.UINT8, "zero_point": 128},
            "QuantizeLinear",
            "Zero point of type uint8 is not supported",
        ),
        ({"pair": False}, "QuantizeLinear", "must be followed by DequantizeLinear"),
    ],
)
def test_parser_reports_iparsererrors(
    trt_standin: ModuleType, tmp_path: Path, changes: dict, operator: str, message: str
) -> None:
    log = Log(trt_standin)
    _, _, parser = _network(trt_standin, _save(_conv_model(**changes), tmp_path), log)
    assert not parser.parse_from_file(str(tmp_path / "m.onnx"))
    errors = [parser.get_error(i) for i in range(parser.num_errors)]
    assert any(e.node_operator() == operator and message in e.desc() for e in errors), [
        (e.node_operator(), e.desc()) for e in errors
    ]
    first = next(e for e in errors if e.node_operator() == operator)
    assert (
        first.node() >= 0
        and first.node_name()
        and first.code() in (trt_standin.ErrorCode.UNSUPPORTED_NODE, trt_standin.ErrorCode.INVALID_NODE)
    )
    assert message.split(":")[0] in log.errors


def _config(trt: ModuleType, builder: Any, lo: int = 1, opt: int = 2, hi: int = 4, workspace: int = 1 << 30) -> Any:
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, workspace)
    config.profiling_verbosity = trt.ProfilingVerbosity.DETAILED
    profile = builder.create_optimization_profile()
    profile.set_shape("input", trt.Dims([lo, 3, 8, 8]), trt.Dims([opt, 3, 8, 8]), trt.Dims([hi, 3, 8, 8]))
    config.add_optimization_profile(profile)
    return config


def _built(trt: ModuleType, tmp_path: Path, **config: Any) -> tuple[Any, Log]:
    log = Log(trt)
    builder, network, parser = _network(trt, _save(_conv_model(), tmp_path), log)
    assert parser.parse_from_file(str(tmp_path / "m.onnx"))
    return builder.build_serialized_network(network, _config(trt, builder, **config)), log


def test_builder_refuses_missing_and_unordered_profiles(trt_standin: ModuleType, tmp_path: Path) -> None:
    log = Log(trt_standin)
    builder, network, parser = _network(trt_standin, _save(_conv_model(), tmp_path), log)
    assert parser.parse_from_file(str(tmp_path / "m.onnx"))
    assert builder.build_serialized_network(network, builder.create_builder_config()) is None
    assert "no optimization profile has been defined" in log.errors
    plan, log = _built(trt_standin, tmp_path, lo=4, opt=2, hi=8)
    assert plan is None and "profile->isValid()" in log.errors
    plan, log = _built(trt_standin, tmp_path, lo=1, opt=8, hi=4)
    assert plan is None


def test_workspace_pool_is_honoured(trt_standin: ModuleType, tmp_path: Path) -> None:
    plan, log = _built(trt_standin, tmp_path, workspace=1024)
    assert plan is None and "insufficient workspace" in log.errors
    plan, _ = _built(trt_standin, tmp_path, workspace=1 << 20)
    assert plan is not None


def test_progress_monitor_is_called_and_can_cancel(trt_standin: ModuleType, tmp_path: Path) -> None:
    calls: list[str] = []

    class Monitor(trt_standin.IProgressMonitor):
        def __init__(self, stop_at: int) -> None:
            trt_standin.IProgressMonitor.__init__(self)
            self.stop_at = stop_at

        def phase_start(self, phase_name: str, parent_phase: str, num_steps: int) -> None:
            calls.append(f"start {phase_name} {num_steps}")

        def step_complete(self, phase_name: str, step: int) -> bool:
            calls.append(f"step {step}")
            return step < self.stop_at

        def phase_finish(self, phase_name: str) -> None:
            calls.append("finish")

    for stop_at, built in ((99, True), (0, False)):
        log = Log(trt_standin)
        builder, network, parser = _network(trt_standin, _save(_conv_model(), tmp_path), log)
        parser.parse_from_file(str(tmp_path / "m.onnx"))
        config = _config(trt_standin, builder)
        config.progress_monitor = Monitor(stop_at)
        calls.clear()
        assert (builder.build_serialized_network(network, config) is not None) is built
        assert calls[0].startswith("start Building engine")
        assert (calls[-1] == "finish") is built and ("cancelled" in log.errors) is not built


def test_timing_cache_round_trips_and_refuses_another_gpu(
    trt_standin: ModuleType, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    log = Log(trt_standin)
    builder, network, parser = _network(trt_standin, _save(_conv_model(), tmp_path), log)
    parser.parse_from_file(str(tmp_path / "m.onnx"))
    config = _config(trt_standin, builder)
    assert config.set_timing_cache(config.create_timing_cache(b""), False)
    assert builder.build_serialized_network(network, config) is not None
    saved = bytes(config.get_timing_cache().serialize())
    again = _config(trt_standin, builder)
    assert again.set_timing_cache(again.create_timing_cache(saved), False)
    log.logger.messages.clear()
    assert builder.build_serialized_network(network, again) is not None
    assert any("0 misses" in m for _, m in log.logger.messages)
    monkeypatch.setattr(trt_standin.__rn50_standin__, "compute_capability", "8.9")
    assert not again.set_timing_cache(again.create_timing_cache(saved), False)
    assert again.set_timing_cache(again.create_timing_cache(saved), True)


def test_plan_records_version_and_device_and_is_refused_elsewhere(
    trt_standin: ModuleType, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    plan, _ = _built(trt_standin, tmp_path)
    runtime_log = Log(trt_standin)
    runtime = trt_standin.Runtime(runtime_log.logger)
    assert runtime.deserialize_cuda_engine(plan) is not None
    assert runtime.deserialize_cuda_engine(bytes(plan)[:-10]) is None and "Serialization" in runtime_log.errors
    assert runtime.deserialize_cuda_engine(b"not a plan") is None and "Magic tag does not match" in runtime_log.errors
    monkeypatch.setattr(trt_standin, "__version__", "10.14.1.48")
    assert runtime.deserialize_cuda_engine(plan) is None
    assert "expecting library version 10.14.1.48 got 10.13.0.35, please rebuild" in runtime_log.errors
    monkeypatch.setattr(trt_standin, "__version__", "10.13.0.35")
    monkeypatch.setattr(trt_standin.__rn50_standin__, "compute_capability", "8.9")
    assert runtime.deserialize_cuda_engine(plan) is None
    assert "incompatible device, expecting compute 8.9 got compute 9.0, please rebuild" in runtime_log.errors


def _layers(trt: ModuleType, plan: Any) -> dict[str, Any]:
    engine = trt.Runtime(trt.Logger()).deserialize_cuda_engine(plan)
    return json.loads(engine.create_engine_inspector().get_engine_information(trt.LayerInformationFormat.JSON))


def test_inspector_reports_int8_only_where_the_onnx_quantizes(trt_standin: ModuleType, tmp_path: Path) -> None:
    for quantized, datatype in ((True, "Int8"), (False, "FP32")):
        log = Log(trt_standin)
        builder, network, parser = _network(trt_standin, _save(_conv_model(quantized=quantized), tmp_path), log)
        assert parser.parse_from_file(str(tmp_path / "m.onnx"))
        info = _layers(trt_standin, builder.build_serialized_network(network, _config(trt_standin, builder)))
        conv = next(x for x in info["Layers"] if x["LayerType"] == "CaskConvolution")
        assert conv["Name"] == "conv + relu" and datatype in conv["Inputs"][0]["Format/Datatype"]
        assert info["Bindings"] == ["input", "output"]


def test_inspector_uses_the_11x_schema_when_emulating_11(
    trt_standin: ModuleType, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(trt_standin, "__version__", "11.4.0.110")
    plan, _ = _built(trt_standin, tmp_path)
    info = _layers(trt_standin, plan)
    assert "Bindings" not in info and [t["IOMode"] for t in info["I/O Tensors"]] == ["Input", "Output"]
    conv = next(x for x in info["Layers"] if x["LayerType"] == "CaskConvolution")
    assert conv["Inputs"][0]["DataType"] == "Int8" and "Format/Datatype" not in conv["Inputs"][0]


def test_execution_context_checks_shapes_and_computes_with_onnxruntime(trt_standin: ModuleType, tmp_path: Path) -> None:
    import onnxruntime

    plan, _ = _built(trt_standin, tmp_path, lo=1, opt=2, hi=4)
    engine = trt_standin.Runtime(trt_standin.Logger()).deserialize_cuda_engine(plan)
    context = engine.create_execution_context()
    assert not context.set_input_shape("input", (8, 3, 8, 8))  # outside the profile
    assert not context.set_input_shape("input", (2, 3, 8))
    assert context.set_input_shape("input", (2, 3, 8, 8))
    assert tuple(context.get_tensor_shape("output")) == (2, 4, 8, 8)
    x = np.random.default_rng(1).standard_normal((2, 3, 8, 8)).astype(np.float32)
    y = np.empty((2, 4, 8, 8), np.float32)
    assert not context.execute_async_v3(0)  # no addresses yet
    assert context.set_tensor_address("input", x.ctypes.data) and context.set_tensor_address("output", y.ctypes.data)
    assert not context.set_tensor_address("nope", 0)
    assert context.execute_async_v3(0)
    expected = onnxruntime.InferenceSession(str(tmp_path / "m.onnx"), providers=["CPUExecutionProvider"]).run(
        None, {"input": x}
    )[0]
    np.testing.assert_array_equal(y, expected)


def test_the_stand_in_is_named_only_where_it_is_wired_in() -> None:
    """Below its wiring (runtimes/trt_env.py: TEST_DOUBLES), rn50 asks ``registry.from_test_double`` and never names
    the stand-in: no identifier or string of the package's other modules says "standin" (docstrings aside)."""
    import rn50

    package = Path(rn50.__file__).parent
    named = []
    for path in sorted(package.rglob("*.py")):
        if path.relative_to(package).as_posix() == "runtimes/trt_env.py":
            continue
        tree = ast.parse(path.read_text())
        docs = {
            id(n.body[0].value)
            for n in ast.walk(tree)
            if isinstance(n, (ast.Module, ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))
            and n.body
            and isinstance(n.body[0], ast.Expr)
        }
        for node in ast.walk(tree):
            words = [
                node.id if isinstance(node, ast.Name) else "",
                node.attr if isinstance(node, ast.Attribute) else "",
                node.name if isinstance(node, (ast.FunctionDef, ast.ClassDef)) else "",
                *((a.name for a in node.names) if isinstance(node, ast.ImportFrom) else ()),
                node.value
                if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docs
                else "",
            ]
            if any("standin" in w.lower() for w in words):
                named.append(f"{path.relative_to(package)}:{getattr(node, 'lineno', '?')}")
    assert named == []

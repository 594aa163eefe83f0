"""Expensive artifacts are built once per test session."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from filelock import FileLock
from helpers import readme_commands, run_readme_line

from rn50.weights import LoadedModel, load_model

if TYPE_CHECKING:
    from collections.abc import Iterator
    from types import ModuleType


# Fixtures that export a model with torch's exporter or run the whole ResNet-50 pipeline: a test using one is
# marked ``slow``, so that `pytest -m "not slow"` is the fast inner loop (tests that export are marked themselves).
SLOW_FIXTURES = {"export_dir", "pipeline_run", "workdir_copy", "fp32_onnx", "r18_dir"}


# Test files whose tests share a module-scoped fixture (a ResNet-18 export, a running Triton server, the README's work
# directory, whose lines run in order): under pytest-xdist each is kept on one worker (--dist loadgroup), so its
# fixture is made once; every other test goes to whichever worker is free.
ONE_WORKER = {
    "test_budget",
    "test_export",
    "test_openvino",
    "test_pt2",
    "test_quantize",
    "test_readme",
    "test_runtimes",
    "test_serving",
    "test_trt_path",
}


# What needs the README quick start's work directory: run after everything else, so that the workers are busy with
# other tests while the quick start runs (pytest_sessionstart starts it with the session), not waiting for it.
QUICKSTART_FIXTURES = {"pipeline_run", "export_dir", "workdir_copy", "fp32_onnx"}
AFTER_QUICKSTART = {"test_readme"}


def _needs_quickstart(item: pytest.Item) -> bool:
    return bool(QUICKSTART_FIXTURES & set(getattr(item, "fixturenames", ()))) or (
        Path(str(item.fspath)).stem in AFTER_QUICKSTART
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if SLOW_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.slow)
        module = Path(str(item.fspath)).stem
        if module in ONE_WORKER:
            item.add_marker(pytest.mark.xdist_group(module))
    # A stable sort: the README's lines keep their order; xdist hands out groups in the order their first test comes,
    # so a group (one worker's file) with a test that needs the quick start goes after everything else as a whole.
    late = {Path(str(i.fspath)).stem for i in items if _needs_quickstart(i)} & ONE_WORKER
    items.sort(key=lambda i: _needs_quickstart(i) or Path(str(i.fspath)).stem in late)


def shared_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder every pytest-xdist worker of this run shares (the parent of the workers' own base folders); without
    xdist, this session's base folder."""
    base = tmp_path_factory.getbasetemp()
    return base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base


@pytest.fixture(scope="session", autouse=True)
def seeded_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The seeded weights are cached in a folder of this session's (inherited by every CLI subprocess), never
    in the user's own cache."""
    from rn50.weights import CACHE_ENV

    folder = shared_folder(tmp_path_factory) / "rn50-cache"  # built once for every worker of the run
    folder.mkdir(exist_ok=True)
    before = os.environ.get(CACHE_ENV)
    os.environ[CACHE_ENV] = str(folder)
    yield folder
    if before is None:
        del os.environ[CACHE_ENV]
    else:
        os.environ[CACHE_ENV] = before


@pytest.fixture(scope="session")
def tiny_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A work directory of the tiny net (tests/tiny.py): its verified FP32 ONNX file, recorded as rn50 records one.
    Tests copy it (``tiny``) to change it."""
    from tiny import write_tiny_workdir

    root = tmp_path_factory.mktemp("tiny") / "work"
    write_tiny_workdir(root)
    return root


@pytest.fixture()
def tiny(tiny_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A private copy of ``tiny_dir``, with rn50's PyTorch reference for it being the tiny net (in this process: for
    the CLI through typer's CliRunner and the library; a subprocess would build ResNet-50)."""
    from tiny import tiny_net

    root = Path(shutil.copytree(tiny_dir, tmp_path / "work"))
    net = tiny_net()
    monkeypatch.setattr("rn50.weights.workdir_model", lambda _workdir: net)
    return root


@pytest.fixture(scope="session")
def quantized_tiny(tiny_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny net's work directory with its FP16 and INT8 files (made by rn50 quantize)."""
    from typer.testing import CliRunner

    from rn50.cli import app

    root = Path(shutil.copytree(tiny_dir, tmp_path_factory.mktemp("tiny-q") / "work"))
    result = CliRunner().invoke(
        app, ["quantize", "--int8", "--fp16", "--count", "16", "--method", "minmax", "--out", str(root)]
    )
    assert result.exit_code == 0, result.output
    return root


@pytest.fixture()
def work(quantized_tiny: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A private copy, with the tiny net as rn50's PyTorch reference (in this process)."""
    from tiny import tiny_net

    net = tiny_net()
    monkeypatch.setattr("rn50.weights.workdir_model", lambda _workdir: net)
    return Path(shutil.copytree(quantized_tiny, tmp_path / "work"))


@pytest.fixture(scope="session")
def seeded50() -> LoadedModel:
    return load_model("seeded", depth=50)


@pytest.fixture(scope="session")
def seeded18() -> LoadedModel:
    """The seeded recipe on ResNet-18: for the tests of the recipe and its cache (any depth runs the same code)."""
    return load_model("seeded", depth=18)


@pytest.fixture(scope="session")
def export_dir(pipeline_run: tuple[Path, subprocess.CompletedProcess[str]]) -> Path:
    """A work directory holding the verified seeded ResNet-50 at opset 18: the README quick start's own (one ResNet-50
    export per test session). Read only: tests copy it to change it."""
    workdir, done = pipeline_run
    assert done.returncode == 0, done.stdout + done.stderr
    return workdir


@pytest.fixture()
def workdir_copy(export_dir: Path, tmp_path: Path) -> Path:
    dst = tmp_path / "work"
    shutil.copytree(export_dir, dst)
    return dst


@pytest.fixture(scope="session")
def fp32_onnx(export_dir: Path) -> Path:
    return export_dir / "resnet50.fp32.onnx"


STANDIN = Path(__file__).resolve().parent / "standin"


def _tensorrt_modules() -> list[str]:
    return [m for m in sys.modules if m == "tensorrt" or m.startswith(("tensorrt.", "tensorrt_bindings"))]


@contextlib.contextmanager
def standin_tensorrt() -> Iterator[ModuleType]:
    """rn50's TensorRT stand-in as the ``tensorrt`` module, here and in subprocesses (PYTHONPATH); whatever
    ``tensorrt`` was loaded before is put back afterwards."""
    with pytest.MonkeyPatch.context() as mp:
        for name in _tensorrt_modules():
            mp.delitem(sys.modules, name)
        mp.syspath_prepend(str(STANDIN))
        mp.setenv("PYTHONPATH", os.pathsep.join([str(STANDIN), *filter(None, [os.environ.get("PYTHONPATH")])]))
        import tensorrt

        assert hasattr(tensorrt, "__rn50_standin__"), tensorrt.__file__
        try:
            yield tensorrt
        finally:
            for name in _tensorrt_modules():
                del sys.modules[name]


@pytest.fixture()
def trt_standin() -> Iterator[ModuleType]:
    with standin_tensorrt() as module:
        yield module


@pytest.fixture(scope="module")
def trt_standin_module() -> Iterator[ModuleType]:
    """The stand-in for a whole test module (its module-scoped fixtures build engines with it)."""
    with standin_tensorrt() as module:
        yield module


QUICKSTART, QUICKSTART_RECORD, QUICKSTART_STARTED = "quickstart", "quickstart.json", "quickstart.started"
README_TIMEOUT_S = 900


def _write_record(record: Path, done: subprocess.CompletedProcess[str]) -> None:
    tmp = record.with_suffix(".tmp")
    tmp.write_text(json.dumps({"args": done.args, "rc": done.returncode, "out": done.stdout, "err": done.stderr}))
    tmp.replace(record)  # whole, or not there


def pytest_sessionstart(session: pytest.Session) -> None:
    """A whole run (no file or marker chosen, as CI's) starts the README quick start at once, in the background of
    the process that hands out the tests, instead of when a test first needs it: the workers run other tests
    meanwhile, where one of them used to wait for it, idle, for the whole ResNet-50 pipeline (~160 s on 2 cores)."""
    config = session.config
    if (
        os.environ.get("PYTEST_XDIST_WORKER")
        or config.getoption("markexpr")
        or config.getoption("keyword")
        or config.args_source is not pytest.Config.ArgsSource.TESTPATHS
    ):
        return
    from rn50.weights import CACHE_ENV

    root = config._tmp_path_factory.getbasetemp()  # type: ignore[attr-defined]  # the workers' shared folder
    (root / "rn50-cache").mkdir(exist_ok=True)
    (root / QUICKSTART).mkdir()
    env = os.environ | {CACHE_ENV: str(root / "rn50-cache"), "COLUMNS": "160", "NO_COLOR": "1"}
    proc = subprocess.Popen(
        ["bash", "-c", readme_commands()[0]],
        cwd=root / QUICKSTART,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )

    def wait() -> None:
        try:
            out, err = proc.communicate(timeout=README_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, err = proc.communicate()
        _write_record(root / QUICKSTART_RECORD, subprocess.CompletedProcess(proc.args, proc.returncode, out, err))

    waiter = threading.Thread(target=wait, daemon=True)
    waiter.start()
    (root / QUICKSTART_STARTED).write_text(str(proc.pid))
    config.stash[_QUICKSTART] = (proc, waiter)


_QUICKSTART = pytest.StashKey[tuple[subprocess.Popen[str], threading.Thread]]()


def pytest_sessionfinish(session: pytest.Session) -> None:
    started = session.config.stash.get(_QUICKSTART, None)
    if started is not None:
        proc, waiter = started
        if proc.poll() is None:  # the run ended first (stopped, or failed early): nothing waits for it
            proc.kill()
        waiter.join(timeout=30)


@pytest.fixture(scope="session")
def pipeline_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, subprocess.CompletedProcess[str]]:
    """The README's quick start, run as written: `rn50 pipeline` in an empty folder (the end-to-end run)."""
    first = readme_commands()[0]
    assert first.split("#")[0].strip() == "rn50 pipeline", (
        f"the README quick start should be `rn50 pipeline`, found {first!r}"
    )
    # Once per run: started with the session (pytest_sessionstart) on a whole run, else by whichever xdist worker asks
    # first; the others wait for it and read its record.
    root = shared_folder(tmp_path_factory)
    cwd, record = root / QUICKSTART, root / QUICKSTART_RECORD
    with FileLock(str(root / "quickstart.lock")):
        if (root / QUICKSTART_STARTED).is_file():
            deadline = time.monotonic() + README_TIMEOUT_S + 60
            while not record.is_file() and time.monotonic() < deadline:
                time.sleep(1)
        elif not record.is_file():
            cwd.mkdir()
            _write_record(record, run_readme_line(first, cwd))
        data = json.loads(record.read_text())
    return cwd / "rn50-out", subprocess.CompletedProcess(data["args"], data["rc"], data["out"], data["err"])

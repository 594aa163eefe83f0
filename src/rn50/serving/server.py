"""A real Triton Inference Server, started with PyTriton (which ships the server binary and its Python
backend), serving one rn50 artifact through rn50's runner (``triton_model.py``).

Triton's Python-backend stub embeds the libpython it was linked with, looked up by the dynamic loader: the
running interpreter's LIBDIR goes first on the library path, so that it finds this interpreter's own.
"""

from __future__ import annotations

import contextlib
import errno
import importlib.util
import logging
import os
import re
import shutil
import socket
import sys
import sysconfig
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rn50.errors import CheckFailed, EnvironmentProblem, UsageError
from rn50.serving.triton_config import TRITON_EXTRA
from rn50.words import cmd, opt

if TYPE_CHECKING:
    from collections.abc import Iterator

log = logging.getLogger(__name__)


# Endpoints a client could use to change the server (load or unload models, shared memory, tracing, log
# settings) need PyTriton's access token; inference, health, metadata, statistics and metrics do not.
RESTRICTED = ["model-repository", "shared-memory", "trace", "logging"]
# A batch of 8 images is 4.8 MB as binary tensors and about 12 MB as JSON; 32 MB takes both with room to spare.
DEFAULT_MAX_REQUEST_MB = 32.0
EXIT_TIMEOUT_S = (
    10  # how long Triton waits for in-flight requests when it is stopped (a batch of 8 takes < 1 s on 2 cores)
)


@dataclass(frozen=True)
class Endpoints:
    host: str = "127.0.0.1"  # 0.0.0.0: every interface
    http_port: int = 8000
    grpc_port: int = 8001
    metrics_port: int = 8002
    # The largest HTTP request body, checked by rn50's front before Triton reads it (serving.front); 0: no front,
    # Triton's HTTP endpoint on the port itself, with no limit.
    max_request_mb: float = DEFAULT_MAX_REQUEST_MB

    @property
    def http_url(self) -> str:
        return f"{self.host}:{self.http_port}"

    @property
    def max_request_bytes(self) -> int:
        return int(self.max_request_mb * 2**20)

    def check(self) -> None:
        """Ports are valid, distinct and free on ``host`` (a taken port is named before the server starts)."""
        ports = {
            str(opt("port")): self.http_port,
            str(opt("grpc_port")): self.grpc_port,
            str(opt("metrics_port")): self.metrics_port,
        }
        if not self.max_request_mb >= 0:
            raise UsageError(
                f"{opt('max_request_mb')} {self.max_request_mb} is negative",
                fix="pass a size in MB, or 0 for no limit (no front: Triton's own HTTP endpoint)",
            )
        for name, port in ports.items():
            if not 1 <= port <= 65535:
                raise UsageError(f"{name} {port} is not a TCP port", fix="pass a port between 1 and 65535")
        if len(set(ports.values())) < len(ports):
            raise UsageError(
                f"{opt('port')}, {opt('grpc_port')} and {opt('metrics_port')} must differ, got "
                f"{', '.join(map(str, ports.values()))}",
                fix="give each endpoint its own port",
            )
        for name, port in ports.items():
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
                s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                try:
                    s.bind((self.host, port))
                except OSError as e:
                    problem = "is in use" if e.errno == errno.EADDRINUSE else f"cannot be opened ({e.strerror})"
                    raise UsageError(
                        f"{name} {port} on {self.host} {problem}", fix=f"pass another {name}, or stop what holds it"
                    ) from None


def libpython() -> Path:
    return Path(sysconfig.get_config_var("LIBDIR") or "") / str(sysconfig.get_config_var("INSTSONAME") or "")


def check_installed() -> None:
    """PyTriton and tritonclient are installed, PyTriton has a Python-backend stub for this Python, and this
    Python has the shared libpython that stub loads."""
    for module in ("pytriton", "tritonclient"):
        if importlib.util.find_spec(module) is None:
            raise EnvironmentProblem(
                f"{module} is not installed (Triton Inference Server comes with nvidia-pytriton)", fix=TRITON_EXTRA
            )
    spec = importlib.util.find_spec("pytriton")
    version = f"{sys.version_info[0]}.{sys.version_info[1]}"
    stub = (
        Path(spec.origin if spec and spec.origin else "").parent
        / "tritonserver"
        / "python_backend_stubs"
        / version
        / "triton_python_backend_stub"
    )
    if not stub.is_file():
        raise EnvironmentProblem(
            f"nvidia-pytriton has no Python backend stub for Python {version}",
            fix="run rn50 on a Python that nvidia-pytriton supports (3.8-3.13)",
        )
    if not sysconfig.get_config_var("Py_ENABLE_SHARED") or not libpython().is_file():
        raise EnvironmentProblem(
            f"this Python has no shared libpython ({libpython()}), which Triton's Python backend loads",
            fix="use a Python built with --enable-shared (a distribution's python3, or pyenv with "
            "PYTHON_CONFIGURE_OPTS=--enable-shared)",
        )


def python_path() -> str:
    """The folders the Python stub adds as site directories: this interpreter's sys.path."""
    return os.pathsep.join(p for p in sys.path if p and Path(p).is_dir())


def _load_error(log_file: Path) -> str | None:
    """The first reason Triton gave for a model that did not load, from its log."""
    try:
        text = log_file.read_text(errors="replace")
    except OSError:
        return None
    found = re.search(r'failed to load \S+ version \d+: (.*?)(?:\\n|"$)', text, re.M)
    return found.group(1) if found else None


def _quiet(triton_class: Any) -> Any:
    """PyTriton's Triton with the server's own output kept off rn50's stdout. Its TritonServer echoes every line
    tritonserver writes outside its log file ("Signal (2) received." when stopped) to stdout unless made with
    verbose=False, which Triton does not pass: that broke `--json` output. The lines stay in PyTriton's record."""

    class QuietTriton(triton_class):
        def _initialize_server(self) -> None:
            super()._initialize_server()
            server = getattr(self, "_triton_server", None)
            if server is not None and hasattr(server, "_verbose"):
                server._verbose = False

    return QuietTriton


def _start(triton: Any, started: list[BaseException | None], release: threading.Event) -> None:
    """Starts the server and waits until it and its models are ready; then stays, until released, because
    PyTriton starts tritonserver with PR_SET_PDEATHSIG, and Linux sends that signal when the starting
    *thread* ends."""
    try:
        triton.__enter__()
        started.append(None)
    except BaseException as e:  # reported by the caller's thread
        started.append(e)
    release.wait()


@contextlib.contextmanager
def running(repository: Path, endpoints: Endpoints, *, log_file: Path) -> Iterator[Any]:
    """Triton serving ``repository`` until the block ends; then stopped, in-flight requests finished first."""
    check_installed()
    log_file.unlink(missing_ok=True)  # a failure in an earlier run's log must not end this one
    libdir = sysconfig.get_config_var("LIBDIR") or ""
    os.environ["LD_LIBRARY_PATH"] = os.pathsep.join(filter(None, [libdir, os.environ.get("LD_LIBRARY_PATH")]))
    for name in ("pytriton", "tritonclient", "sh"):  # their INFO lines are Triton's business, not rn50's output
        logging.getLogger(name).setLevel(max(logging.getLogger().level, logging.WARNING))
    from pytriton.triton import Triton, TritonConfig, TritonSecurityConfig

    from rn50.serving.front import Front, free_port

    # With a request limit, Triton's HTTP endpoint listens on a private loopback port behind rn50's front.
    limited = endpoints.max_request_bytes > 0
    http_address, http_port = ("127.0.0.1", free_port()) if limited else (endpoints.host, endpoints.http_port)
    config = TritonConfig(
        model_repository=repository,
        http_address=http_address,
        http_port=http_port,
        grpc_address=endpoints.host,
        grpc_port=endpoints.grpc_port,
        metrics_address=endpoints.host,
        metrics_port=endpoints.metrics_port,
        log_file=log_file,
        exit_timeout_secs=EXIT_TIMEOUT_S,
        strict_readiness=True,
        allow_gpu_metrics=shutil.which("nvidia-smi") is not None,
    )
    triton = _quiet(Triton)(config=config, security_config=TritonSecurityConfig(restricted_endpoints=list(RESTRICTED)))
    started: list[BaseException | None] = []
    release = threading.Event()
    threading.Thread(target=_start, args=(triton, started, release), daemon=True).start()
    proxy = Front(endpoints.host, endpoints.http_port, http_port, endpoints.max_request_bytes) if limited else None
    try:
        _wait_started(triton, started, log_file)
        if proxy is not None:
            proxy.start()
        yield triton
    finally:
        triton.stop()  # in-flight requests are answered first, and their answers relayed by the front
        release.set()
        if proxy is not None:
            proxy.stop()


def _wait_started(triton: Any, started: list[BaseException | None], log_file: Path) -> None:
    seen_alive = False
    while not started:  # PyTriton waits up to two minutes for a server that already exited: watch it here
        seen_alive = seen_alive or triton.is_alive()
        failed = _load_error(log_file)
        if failed or (seen_alive and not triton.is_alive()):
            raise CheckFailed(
                f"Triton Inference Server did not start: {failed or 'it exited'}", fix=f"see its log, {log_file}"
            )
        time.sleep(0.1)
    if started[0] is not None:
        reason = _load_error(log_file) or str(started[0])
        raise CheckFailed(
            f"Triton Inference Server did not start: {reason}", fix=f"see its log, {log_file}"
        ) from started[0]


def wait(triton: Any, poll_s: float = 0.5) -> None:
    """Block until the server stops by itself (an error) or the process is interrupted (Ctrl-C, SIGTERM)."""
    while triton.is_alive():
        time.sleep(poll_s)
    raise CheckFailed(
        "Triton Inference Server stopped on its own", fix=f"see its log ({cmd('serve')} prints where it is)"
    )


SCRATCH_PREFIX, OWNER_FILE = "rn50-serve-", "owner.pid"


def remove_abandoned_scratch(tmp: Path | None = None) -> list[Path]:
    """The scratch folders of `rn50 serve` runs that no longer run (killed outright, kill -9), removed: what a
    killed server left behind. A folder whose owner still runs, or that names none, is left alone."""
    removed = []
    for folder in Path(tmp or tempfile.gettempdir()).glob(SCRATCH_PREFIX + "*"):
        try:
            pid = int((folder / OWNER_FILE).read_text())
            os.kill(pid, 0)
        except (OSError, ValueError) as e:
            if isinstance(e, ProcessLookupError):
                shutil.rmtree(folder, ignore_errors=True)
                removed.append(folder)
    return removed


@contextlib.contextmanager
def scratch_folder() -> Iterator[Path]:
    """A private folder for one `rn50 serve` run — the model repository Triton reads, its log, the served files —
    at a path of plain ASCII without spaces (Triton's command line and its Python stub take nothing else), named
    after this process, and removed when the run ends."""
    for folder in remove_abandoned_scratch():
        log.info(f"removed %s, left by an {cmd('serve')} that was killed", folder)
    folder = Path(tempfile.mkdtemp(prefix=SCRATCH_PREFIX))
    if not folder.as_posix().isascii() or " " in folder.as_posix():
        shutil.rmtree(folder, ignore_errors=True)
        folder = Path(tempfile.mkdtemp(prefix=SCRATCH_PREFIX, dir="/tmp"))
    (folder / OWNER_FILE).write_text(str(os.getpid()))
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)

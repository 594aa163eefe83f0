"""Faults a new user hit (second round): each as the user met it, with real processes where it was a process."""

from __future__ import annotations

import errno
import importlib.util
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from helpers import one_line_error
from typer.testing import CliRunner

from rn50.cli import app

RN50 = [sys.executable, "-m", "rn50"]
cli = CliRunner()


def test_version_alone_prints_the_version() -> None:
    from rn50 import __version__

    done = subprocess.run([*RN50, "--version"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and done.stdout.strip() == f"rn50 {__version__}", done.stdout + done.stderr


@pytest.mark.slow  # runs rn50 doctor in a fresh interpreter (every runtime imported)
def test_third_party_telemetry_stays_off_the_terminal() -> None:
    """With a HOME nothing can be written to (/proc refuses a new folder, even to root), ONNX Runtime's telemetry
    warned in colour at import and OpenVINO's through the root logger; neither is rn50's to say (--verbose
    shows a library's root-logger lines)."""
    done = subprocess.run(
        [*RN50, "doctor"], capture_output=True, text=True, timeout=300, env=os.environ | {"HOME": "/proc"}
    )
    assert done.returncode in (0, 1), done.stderr  # 1: something broken on this machine, said on stdout
    assert "telemetry" not in done.stderr.lower() and "\x1b[" not in done.stderr, done.stderr


def test_refused_weights_leave_no_work_directory(tmp_path: Path) -> None:
    """The checkpoint's content is judged after the work directory is opened; a refusal removes the directory
    this run made, since it left nothing in it."""
    import torch

    bad = tmp_path / "bad.pth"
    torch.save({"a": torch.zeros(2)}, bad)
    out = tmp_path / "fresh"
    one_line_error(cli.invoke(app, ["export", "--weights", str(bad), "--out", str(out)]), 2, "does not fit ResNet-50")
    assert not out.exists()


def test_a_refusal_keeps_a_directory_the_run_did_not_make(tmp_path: Path) -> None:
    import torch

    bad = tmp_path / "bad.pth"
    torch.save({"a": torch.zeros(2)}, bad)
    out = tmp_path / "mine"
    out.mkdir()
    one_line_error(cli.invoke(app, ["export", "--weights", str(bad), "--out", str(out)]), 2, "does not fit")
    assert out.is_dir() and not list(out.iterdir())


def test_triton_log_on_a_read_only_work_directory_goes_to_the_temporary_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A read-only file system refuses every write, and even the removal of a file that is not there (EROFS): the
    log is kept in the temporary folder, said so, and stopping the server stays exit 130 (it was exit 3)."""
    from rn50.commands import serve

    log = tmp_path / "triton.log"
    log.write_text("I1204 server log\n")
    readonly = tmp_path / "readonly"
    readonly.mkdir()
    real_copy, real_unlink = shutil.copyfile, Path.unlink

    def copyfile(src: object, dst: object) -> object:
        if Path(str(dst)).parent == readonly:
            raise OSError(errno.EROFS, "Read-only file system")
        return real_copy(src, dst)  # type: ignore[arg-type]

    def unlink(self: Path, missing_ok: bool = False) -> None:
        if self.parent == readonly:
            raise OSError(errno.EROFS, "Read-only file system")
        real_unlink(self, missing_ok=missing_ok)

    monkeypatch.setattr(serve.shutil, "copyfile", copyfile)
    monkeypatch.setattr(Path, "unlink", unlink)
    monkeypatch.setenv("TMPDIR", str(tmp_path / "tmp"))
    (tmp_path / "tmp").mkdir()
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", None)
    kept = serve._keep_log(log, readonly / "triton-resnet50.log")
    assert kept is not None and kept.parent == tmp_path / "tmp" and kept.read_text() == log.read_text()
    assert "Read-only file system" in caplog.text and f"kept Triton's log as {kept} instead" in caplog.text


@pytest.mark.slow  # starts a real Triton server
@pytest.mark.skipif(
    importlib.util.find_spec("pytriton") is None, reason="nvidia-pytriton is not installed (pip install 'rn50[triton]')"
)
def test_serve_json_is_one_json_document_after_it_is_stopped(tiny_dir: Path, tmp_path: Path) -> None:
    """tritonserver's own output ("Signal (2) received.") once reached rn50's stdout, after serve's JSON."""
    work = Path(shutil.copytree(tiny_dir, tmp_path / "work"))
    ports = []
    for _ in range(3):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            ports.append(s.getsockname()[1])
    args = ["--port", str(ports[0]), "--grpc-port", str(ports[1]), "--metrics-port", str(ports[2])]
    proc = subprocess.Popen(
        [*RN50, "serve", "--out", str(work), "--json", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 180
    while proc.poll() is None and time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", ports[0]), timeout=1).close()
            break
        except OSError:
            time.sleep(0.5)
    time.sleep(3)  # ready, and its JSON printed
    proc.send_signal(signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 130, stderr
    assert json.loads(stdout)["ready"] is True, stdout


@pytest.mark.slow
def test_a_checkpoint_with_one_class_exports_and_is_verified(tmp_path: Path) -> None:
    """Top-1 does not exist for one output: shown as "–", never a crash after the file was written."""
    import torch

    from rn50.model import resnet

    checkpoint = tmp_path / "one.pth"
    torch.save(resnet(18, num_classes=1).state_dict(), checkpoint)
    done = subprocess.run(
        [*RN50, "export", "--depth", "18", "--weights", str(checkpoint), "--out", str(tmp_path / "out")],
        capture_output=True,
        text=True,
        timeout=600,
        env=os.environ | {"COLUMNS": "200"},
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "│ –     │ pass" in done.stdout, done.stdout
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert manifest["artifacts"]["onnx-fp32"]["verified"] is True
    assert manifest["model"]["head"] == "embedding"  # one output is not ImageNet's classes: judged by cosine

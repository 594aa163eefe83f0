"""rn50 from Python: the commands as functions, with the CLI's checks, lock and outcomes."""

from __future__ import annotations

import inspect
import os
import subprocess
import sys
from typing import TYPE_CHECKING

import pytest

import rn50
from rn50.errors import CheckFailed, UsageError

if TYPE_CHECKING:
    from pathlib import Path


def test_import_rn50_stays_light() -> None:
    """The functions load on first use: importing the package pulls in neither the CLI nor torch."""
    code = "import sys, rn50; print('rn50.cli' in sys.modules, 'torch' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.split() == ["False", "False"]


def test_every_command_but_serve_is_a_function_with_its_flags_as_keywords() -> None:
    from rn50.api import FUNCTIONS

    assert {"export", "calibrate", "quantize", "build_trt", "parity", "profile", "pipeline", "verify"} <= set(FUNCTIONS)
    assert "serve" not in FUNCTIONS
    params = inspect.signature(rn50.parity).parameters
    assert {"out", "check", "runtime", "artifact", "count", "threshold", "labels"} <= set(params)


def test_parity_returns_the_report_the_cli_renders(work: Path) -> None:
    outcome = rn50.parity(out=work, runtime="onnxruntime-cpu", artifact=["onnx-fp32"], count=8)
    assert outcome.report.passed and outcome.error is None
    assert outcome.to_dict()["schema"] == "rn50.parity/4" and (work / "parity.json").is_file()


def test_a_failed_check_raises_with_the_outcome_unless_asked_not_to(work: Path) -> None:
    strict = ["int8:min_cosine=0.999999"]
    with pytest.raises(CheckFailed) as failed:
        rn50.parity(out=work, runtime="onnxruntime-cpu", count=8, threshold=strict)
    assert failed.value.outcome is not None and not failed.value.outcome.report.passed
    outcome = rn50.parity(out=work, runtime="onnxruntime-cpu", count=8, threshold=strict, check=False)
    assert isinstance(outcome.error, CheckFailed) and not outcome.report.passed


def test_bad_keywords_and_values_are_the_clis_errors(work: Path) -> None:
    with pytest.raises(UsageError, match="rn50.parity\\(\\) has no option bogus"):
        rn50.parity(out=work, bogus=1)
    with pytest.raises(UsageError, match="unknown runtime"):
        rn50.parity(out=work, runtime="no-such-runtime")
    with pytest.raises(UsageError, match="not an rn50 work directory"):
        rn50.parity(out=work / "nowhere")


def test_a_locked_work_directory_is_refused(work: Path) -> None:
    holder = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        (work / ".rn50.lock").write_text(f"{holder.pid}\n")
        with pytest.raises(UsageError, match=f"in use by another rn50 run \\(PID {holder.pid}\\)"):
            rn50.parity(out=work, count=4)
    finally:
        holder.kill()
        holder.wait()
        os.unlink(work / ".rn50.lock")


def test_options_are_checked_once_per_run(monkeypatch: pytest.MonkeyPatch) -> None:
    """The CLI and the API check a command's options once, before any work; the command trusts them."""
    from typer.testing import CliRunner

    from rn50.cli import app
    from rn50.commands.info import InfoOptions

    calls = []
    original = InfoOptions.check
    monkeypatch.setattr(InfoOptions, "check", lambda self: calls.append(1) or original(self))
    assert CliRunner().invoke(app, ["info", "--json"]).exit_code == 0
    rn50.info()
    assert calls == [1, 1]

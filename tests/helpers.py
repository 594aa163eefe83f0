"""Helpers the tests share (imported as ``helpers``; conftest.py holds fixtures only)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path


def one_line_error(result: object, code: int, *needles: str) -> None:
    """A CLI result that failed as rn50 promises: ``code``, one ``error:`` line holding ``needles``, no traceback."""
    out = result.output  # type: ignore[attr-defined]
    assert result.exit_code == code, out  # type: ignore[attr-defined]
    assert "Traceback" not in out and out.count("error:") == 1, out
    for needle in needles:
        assert needle in out, out


README = Path(__file__).resolve().parent.parent / "README.md"
NOT_RUN = ("pip ", "python -m pytest")  # set-up and the test command itself


def readme_commands() -> list[str]:
    """Every command line of the README's ```bash blocks, in order (set-up and test lines left out)."""
    lines, inside = [], False
    for line in README.read_text().splitlines():
        if line.startswith("```"):
            inside = line.strip() == "```bash" if not inside else False
            continue
        if inside and line.strip() and not line.lstrip().startswith("#") and not line.startswith(NOT_RUN):
            lines.append(line.strip())
    return lines


def readme_python() -> list[str]:
    """Every ```python block of the README, whole."""
    blocks, current = [], None
    for line in README.read_text().splitlines():
        if current is None and line.strip() == "```python":
            current = []
        elif current is not None and line.startswith("```"):
            blocks.append("\n".join(current) + "\n")
            current = None
        elif current is not None:
            current.append(line)
    return blocks


def run_readme_line(line: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = os.environ | {"COLUMNS": "160", "NO_COLOR": "1"}
    return subprocess.run(
        ["bash", "-c", line], cwd=cwd, env=env, capture_output=True, text=True, timeout=900, check=False
    )

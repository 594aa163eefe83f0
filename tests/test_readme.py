import shutil
import subprocess
from pathlib import Path

from conftest import readme_commands, run_readme_line


def test_every_readme_command_runs(pipeline_run: tuple[Path, subprocess.CompletedProcess[str]], tmp_path: Path) -> None:
    """The quick start ran in the fixture; the rest run here, in order, in a copy of its work directory.
    Lines marked "GPU host" must run, or be refused cleanly (exit 2 naming TensorRT/CUDA) where there is none."""
    src, first = pipeline_run
    assert first.returncode == 0, first.stdout + first.stderr
    shutil.copytree(src, tmp_path / "rn50-out")
    lines = readme_commands()[1:]
    assert any(line.startswith("rn50 profile") for line in lines) and any(line.startswith("rn50 doctor") for line in lines)
    for line in lines:
        assert line.startswith("rn50 "), f"README bash blocks should hold rn50 commands, found {line!r}"
        done = run_readme_line(line, tmp_path)
        output = done.stdout + done.stderr
        if "GPU host" in line and done.returncode != 0:
            assert done.returncode == 2 and ("TensorRT" in output or "CUDA" in output), f"{line}: {output}"
            assert "No such option" not in output and "Usage:" not in output, f"{line}: {output}"
            continue
        assert done.returncode == 0, f"{line} exited {done.returncode}: {output}"

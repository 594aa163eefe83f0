"""Nothing lost, nothing unexplained: artifact integrity, the work-directory lock, signals, and validation
before any work. Faults are injected for real: flipped bytes, real signals to real processes, two real
processes on one directory."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from helpers import one_line_error
from typer.testing import CliRunner

from rn50.artifacts import LOCK, WorkDir
from rn50.cli import app, items

cli = CliRunner()


def _flip(path: Path) -> None:
    data = bytearray(path.read_bytes())
    middle = len(data) // 2
    data[middle : middle + 16] = bytes(b ^ 0xFF for b in data[middle : middle + 16])
    path.write_bytes(bytes(data))


# --- integrity ---------------------------------------------------------------------------------------
def test_tampered_artifact_is_refused_and_verify_finds_it(work: Path) -> None:
    result = cli.invoke(app, ["parity", "--out", str(work), "--runtime", "onnxruntime-cpu", "--count", "16", "--json"])
    assert result.exit_code == 0, result.output
    tested = {r["artifact"]: r["sha256"] for r in json.loads(result.stdout)["results"]}
    recorded = {a.name: a.sha256 for a in WorkDir(work).artifacts()}
    assert tested and all(tested[name] == recorded[name] for name in tested)  # parity.json names the bytes it tested
    assert cli.invoke(app, ["verify", "--out", str(work)]).exit_code == 0
    _flip(work / "tiny.int8.onnxruntime-cpu.onnx")
    before = sorted(p.name for p in work.iterdir())
    result = cli.invoke(app, ["parity", "--out", str(work), "--runtime", "onnxruntime-cpu", "--count", "16"])
    one_line_error(
        result,
        2,
        "tiny.int8.onnxruntime-cpu.onnx changed since it was made",
        "rn50 quantize --int8 --target onnxruntime-cpu",
    )
    assert sorted(p.name for p in work.iterdir()) == before
    result = cli.invoke(app, ["verify", "--out", str(work), "--json"])
    assert result.exit_code == 1
    data = json.loads(result.stdout)
    assert data["verdict"] == "failed" and data["failed"] == 1
    findings = {f["artifact"]: f["status"] for f in data["findings"]}
    assert findings["onnx-int8-onnxruntime-cpu"] == "changed" and findings["onnx-fp32"] == "ok"


def test_verify_reports_stale_parents_and_unrecorded_files(work: Path) -> None:
    workdir = WorkDir(work)
    fp32 = workdir.artifact("onnx-fp32")
    assert fp32 is not None
    from dataclasses import replace

    workdir.record(replace(fp32, sha256="0" * 64))  # as if the FP32 model had been re-exported since
    (work / "tiny.fp32.onnx").write_bytes(b"")  # and its file replaced
    shutil.copy(work / "tiny.fp16.onnx", work / "stray.onnx")
    result = cli.invoke(app, ["verify", "--out", str(work), "--json"])
    assert result.exit_code == 1
    findings = {
        f["artifact"] if f["artifact"] != "–" else f["path"]: f["status"] for f in json.loads(result.stdout)["findings"]
    }
    assert (
        findings["onnx-fp32"] == "changed"
        and findings["onnx-fp16"] == "stale-parent"
        and findings["stray.onnx"] == "unrecorded"
    )


def test_verify_checks_a_triton_repository_and_only_reads(work: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The model files rn50 triton-repo copied are checked against the artifact they copy (never "unrecorded"); verify
    only reads (a read-only or locked work directory is verified all the same)."""
    done = cli.invoke(app, ["triton-repo", "--out", str(work), "--device", "cpu"])
    assert done.exit_code == 0, done.output
    result = cli.invoke(app, ["verify", "--out", str(work), "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["verdict"] == "ok"
    copies = {f["path"]: f for f in json.loads(result.stdout)["findings"] if f["path"].startswith("triton/")}
    assert set(copies) == {"triton/onnx-fp32-cpu/1/model.onnx", "triton/onnx-int8-onnxruntime-cpu-cpu/1/model.onnx"}
    assert all(f["status"] == "ok" and "Triton repository copy" in f["detail"] for f in copies.values())
    (work / "triton/onnx-fp32-cpu/1/model.onnx").write_bytes(b"edited")
    result = cli.invoke(app, ["verify", "--out", str(work), "--json"])
    findings = {f["path"]: f for f in json.loads(result.stdout)["findings"]}
    assert result.exit_code == 1 and findings["triton/onnx-fp32-cpu/1/model.onnx"]["status"] == "changed"
    shutil.rmtree(work / "triton")
    # Nothing that writes is called: no lock (a run holding one does not block verify), no record, no file.
    from rn50 import artifacts

    def writes(*args: object, **kwargs: object) -> None:
        raise AssertionError("verify wrote to the work directory")

    monkeypatch.setattr(artifacts.WorkDir, "locked", writes)
    monkeypatch.setattr(artifacts.WorkDir, "record", writes)
    monkeypatch.setattr(artifacts, "atomic_path", writes)
    before = {p: p.stat().st_mtime_ns for p in work.rglob("*")}
    result = cli.invoke(app, ["verify", "--out", str(work)])
    assert result.exit_code == 0, result.output
    assert {p: p.stat().st_mtime_ns for p in work.rglob("*")} == before


def test_missing_work_directory_is_not_created(tmp_path: Path) -> None:
    for command in (["parity"], ["profile"], ["verify"]):
        result = cli.invoke(app, [*command, "--out", str(tmp_path / "typo")])
        one_line_error(result, 2, "is not an rn50 work directory")
        assert not (tmp_path / "typo").exists()


# --- lock, signals, half-written files ---------------------------------------------------------------
HOLD = (
    "import sys, time; from rn50.artifacts import WorkDir\n"
    "with WorkDir(sys.argv[1]).locked():\n    print('held', flush=True); time.sleep(60)\n"
)


CALIBRATE = ["calibrate", "--count", "2", "--method", "minmax"]  # a command that takes the lock, and is quick


@pytest.mark.slow  # three rn50 processes
def test_second_run_is_refused_and_a_dead_holder_is_taken_over(work: Path) -> None:
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(work)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        result = subprocess.run(["rn50", *CALIBRATE, "--out", str(work)], capture_output=True, text=True, timeout=120)
        assert result.returncode == 2 and f"in use by another rn50 run (PID {holder.pid})" in result.stderr, (
            result.stderr
        )
        reading = subprocess.run(["rn50", "verify", "--out", str(work)], capture_output=True, text=True, timeout=120)
        assert reading.returncode == 0, reading.stderr  # verify only reads: it does not wait for the lock
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    assert (work / LOCK).is_file()  # SIGKILL left the lock and, say, a half-written file
    (work / ".tiny.fp16.onnx.abc123.partial").write_bytes(b"half")
    result = subprocess.run(["rn50", *CALIBRATE, "--out", str(work)], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    said = " ".join(result.stderr.split())  # rich wraps log lines at the terminal width, wherever the path ends
    assert f"took over the lock of PID {holder.pid}" in said and "removed 1 half-written file" in said, result.stderr
    assert not (work / LOCK).exists() and not list(work.glob("*.partial"))


@pytest.mark.slow  # runs torch's exporter
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_interrupt_exits_130_and_leaves_nothing_half_written(tmp_path: Path, sig: signal.Signals) -> None:
    out = tmp_path / "out"
    env = os.environ | {"COLUMNS": "160"}
    proc = subprocess.Popen(
        ["rn50", "export", "--out", str(out)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env
    )
    deadline = time.monotonic() + 60
    while not (out / LOCK).exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    time.sleep(2)  # into the export
    proc.send_signal(sig)
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 130, stderr
    assert "interrupted" in stderr and "Traceback" not in stderr
    assert not list(out.rglob("*.partial")) and not (out / LOCK).exists()


# --- validation before work --------------------------------------------------------------------------
def test_threads_beyond_the_usable_cores_are_refused(work: Path) -> None:
    from rn50.machine import usable_cores

    cores = usable_cores()
    for command in (["profile"], ["parity"]):
        result = cli.invoke(app, [*command, "--out", str(work), "--threads", str(cores + 1)])
        one_line_error(
            result,
            2,
            f"--threads {cores + 1} is more than the {cores} usable cores",
            f"pass --threads {cores} or fewer",
        )


def test_pipeline_checks_images_and_weights_before_creating_anything(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    for args, message in (
        (["--images", str(tmp_path / "empty")], "no readable images in"),
        (["--weights", "https://example.com/resnet50.pth"], "is a URL: rn50 never downloads weights"),
    ):
        result = cli.invoke(app, ["pipeline", "--out", str(tmp_path / "out"), *args])
        one_line_error(result, 2, message)
        assert not (tmp_path / "out").exists()


def test_text_file_named_npy_gets_a_clear_message(work: Path, tmp_path: Path) -> None:
    (tmp_path / "x.npy").write_text("not an array\n")
    result = cli.invoke(app, ["parity", "--out", str(work), "--arrays", str(tmp_path / "x.npy")])
    one_line_error(result, 2, "not a .npy or .npz file", "np.save")
    assert "allow_pickle" not in result.output


def test_parity_on_few_images_warns(work: Path) -> None:
    result = cli.invoke(
        app, ["parity", "--out", str(work), "--runtime", "onnxruntime-cpu", "--artifact", "onnx-fp32", "--count", "4"]
    )
    assert result.exit_code == 0 and "too few for the verdict to mean much" in result.output, result.output
    assert "too few" in (work / "parity.md").read_text()


def test_oversized_images_are_skipped_with_a_warning(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from PIL import Image

    from rn50.feeds import image_folder

    Image.new("RGB", (64, 64), (120, 20, 200)).save(tmp_path / "small.png")
    Image.new("L", (400, 400)).save(tmp_path / "huge.png")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 50_000)  # Pillow refuses images over twice this: a "bomb"
    feeds = image_folder(tmp_path)
    assert len(feeds) == 1 and feeds.skipped == 1


def test_list_options_take_repeated_flags_and_commas() -> None:
    from rn50.commands.pipeline import select_steps

    assert items(["build-trt,profile"]) == items(["build-trt", "profile"]) == ["build-trt", "profile"]
    assert select_steps(items(["build-trt, profile"]), None) == ("export", "calibrate", "quantize", "pt2", "parity")
    from rn50.results.profile_results import parse_batches

    assert parse_batches(items(["1", "8,32"])) == (1, 8, 32) and parse_batches(None) == (1, 8)


def test_seeded_weights_do_not_depend_on_the_thread_count(seeded18: object) -> None:
    import torch

    from rn50.weights import seeded_model, state_fingerprint

    before = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = state_fingerprint(seeded_model(18))  # built, not read from the cache (the recipe of every depth)
    finally:
        torch.set_num_threads(before)
    assert one == seeded18.fingerprint  # type: ignore[attr-defined]  # built on the default thread count


@pytest.mark.parametrize(
    ("damage", "field"),
    [
        (lambda d: d["artifacts"]["onnx-fp16"].update(path=["a", "b"]), "artifacts.onnx-fp16.path"),
        (lambda d: d["artifacts"]["onnx-fp32"].update(sha256=12), "artifacts.onnx-fp32.sha256"),
        (lambda d: d.update(steps="export"), "steps"),
        (lambda d: d["artifacts"]["onnx-fp32"].update(colour="red"), "unknown field(s) colour"),
        (lambda d: d["artifacts"]["onnx-fp32"].update(path="/etc/passwd"), "/etc/passwd leaves the work directory"),
        (lambda d: d["artifacts"]["onnx-fp16"].update(path="../../outside.onnx"), "../../outside.onnx leaves the work"),
        (lambda d: d.update(steps={"quantize": {"key": "k", "outputs": {"/tmp/x": "0"}}}), "steps.quantize.outputs"),
    ],
    ids=["path-type", "sha-type", "steps-type", "unknown-field", "absolute-path", "parent-path", "step-output-path"],
)
@pytest.mark.parametrize("command", ["parity", "verify"])
def test_malformed_manifest_is_refused_whole_with_its_field(work: Path, damage: Any, field: str, command: str) -> None:
    path = work / "manifest.json"
    data = json.loads(path.read_text())
    damage(data)
    path.write_text(json.dumps(data))
    args = ["--count", "16"] if command == "parity" else []
    one_line_error(cli.invoke(app, [command, "--out", str(work), *args]), 2, f"{path} is malformed", field)
    assert not (work / "parity.json").exists()


def test_an_artifact_linked_out_of_the_work_directory_is_refused(work: Path, tmp_path: Path) -> None:
    outside = tmp_path / "outside.onnx"
    fp16 = work / "tiny.fp16.onnx"
    outside.write_bytes(fp16.read_bytes())
    fp16.unlink()
    fp16.symlink_to(outside)
    done = cli.invoke(app, ["parity", "--out", str(work), "--count", "16", "--runtime", "onnxruntime-cpu"])
    one_line_error(done, 2, "onnx-fp16: tiny.fp16.onnx leads out of the work directory")


def test_a_file_that_is_not_onnx_is_one_line(work: Path) -> None:
    for args in (["parity", "--onnx", "/etc/passwd"], ["build-trt", "--onnx", "/etc/passwd"]):
        one_line_error(cli.invoke(app, [*args, "--out", str(work)]), 2, "/etc/passwd is not an ONNX model")


def test_full_disk_in_a_library_write_is_one_line_and_leaves_nothing(
    work: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """ONNX Runtime's calibrator writes a shape-inferred copy of the model; that write fails on a full disk."""
    import errno

    import onnx

    real = onnx.save_model

    def full(proto: object, f: object, *args: object, **kwargs: object) -> None:
        if str(f).endswith("-inferred.onnx") or "augmented" in str(f):
            Path(str(f)).write_bytes(b"half")
            raise OSError(errno.ENOSPC, "No space left on device", str(f))
        real(proto, f, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(onnx, "save_model", full)
    monkeypatch.setattr(
        onnx.shape_inference, "infer_shapes_path", lambda src, dst=None, *a, **k: full(None, dst or src)
    )
    before = sorted(p.relative_to(work) for p in work.rglob("*"))
    result = cli.invoke(app, ["calibrate", "--out", str(work), "--count", "4", "--method", "entropy"])
    one_line_error(result, 2, "no space left on the device writing", "TMPDIR")  # the full disk is the temporary one
    assert sorted(p.relative_to(work) for p in work.rglob("*")) == before  # no -inferred.onnx, no stray file


def test_a_full_or_read_only_disk_is_named_with_its_way_out(tmp_path: Path) -> None:
    import errno
    import tempfile

    from rn50.artifacts import _os_error, no_space

    scratch = Path(tempfile.gettempdir()) / "rn50-x" / "model.onnx"
    assert "TMPDIR" in (no_space(scratch).fix or "") and str(scratch) in no_space(scratch).message
    elsewhere = Path.cwd() / "rn50-out" / "model.onnx"
    if not elsewhere.resolve().is_relative_to(Path(tempfile.gettempdir()).resolve()):
        assert no_space(elsewhere).fix == "free some space or pass --out on another disk"
    read_only = _os_error(tmp_path / "a.onnx", OSError(errno.EROFS, "Read-only file system"))
    assert "the file system is read-only" in read_only.message and "permission" not in read_only.message
    assert "permission denied" in _os_error(tmp_path / "a.onnx", OSError(errno.EACCES, "Permission denied")).message


def test_pipeline_prints_a_line_per_step_when_not_on_a_terminal(work: Path) -> None:
    result = cli.invoke(app, ["pipeline", "--out", str(work), "--only", "calibrate", "--calibration-count", "4"])
    assert result.exit_code == 0, result.output
    assert "calibrate …" in result.stderr and "calibrate: ran in" in result.stderr


@pytest.mark.parametrize(
    "args, message",
    [
        (["calibrate", "--method", "median"], "unknown calibration method 'median'"),
        (["quantize", "--int8", "--percentile", "200"], "--percentile 200.0 is out of range"),
        (["calibrate", "--arrays", "missing.npy"], "array file not found"),
        (["export", "--weights", "missing.pth"], "weights file not found"),
        (["pipeline", "--batch", "1,10000000"], "--batch 10000000 needs about"),
        (["calibrate", "--calibration-batch", "10000000"], "pass --calibration-batch"),
        (["export", "--weights", "/dev/zero"], "weights path is not a regular file: /dev/zero"),
    ],
)
def test_no_work_directory_is_created_for_a_refused_command(tmp_path: Path, args: list[str], message: str) -> None:
    result = cli.invoke(app, [*args, "--out", str(tmp_path / "new")])
    one_line_error(result, 2, message)
    assert not (tmp_path / "new").exists()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["profile", "--batch", "1,10000000"], "pass --batch "),
        (["parity", "--batch", "10000000"], "GiB is available"),
        (["info", "--image-size", "100000"], "--image-size 100000 needs about"),
    ],
)
def test_a_batch_that_cannot_fit_in_memory_is_refused_before_it_is_allocated(
    work: Path, args: list[str], message: str
) -> None:
    one_line_error(cli.invoke(app, [*args, "--out", str(work)] if args[0] != "info" else args), 2, message)


def test_the_memory_estimate_names_the_largest_batch_that_fits() -> None:
    from rn50.errors import UsageError
    from rn50.machine import BYTES_PER_IMAGE, check_batch_memory

    check_batch_memory(10, available=10 * BYTES_PER_IMAGE)  # fits exactly
    with pytest.raises(UsageError) as e:
        check_batch_memory(11, available=10 * BYTES_PER_IMAGE)
    assert e.value.fix == "pass --batch 10 or less"
    with pytest.raises(UsageError) as e:
        check_batch_memory(1, 448, available=2 * BYTES_PER_IMAGE)  # four times the pixels of 224×224
    assert e.value.fix == "free some memory, or use a machine with more"


def test_parity_runtime_comma_list_is_split_before_it_is_checked(work: Path) -> None:
    result = cli.invoke(
        app,
        [
            "parity",
            "--out",
            str(work),
            "--runtime",
            "onnxruntime-cpu,onnxruntime-cuda",
            "--artifact",
            "onnx-fp32",
            "--count",
            "16",
            "--json",
        ],
    )
    assert result.exit_code == 0, result.output
    assert {r["runtime"] for r in json.loads(result.stdout)["results"]} == {"onnxruntime-cpu", "onnxruntime-cuda"}


def test_an_unforeseen_failure_is_one_line_with_its_own_exit_code(monkeypatch: pytest.MonkeyPatch) -> None:
    """A bug (here: a library raising what rn50 did not foresee) is one line, exit 3, a traceback with --verbose."""
    from rn50.commands import doctor

    def broken() -> None:
        raise ZeroDivisionError("division by zero\nsecond line")

    monkeypatch.setattr(doctor, "run_checks", broken)
    one_line_error(
        cli.invoke(app, ["doctor"]),
        3,
        "error: unexpected ZeroDivisionError: division by zero",
        "--verbose",
        "report it",
    )
    verbose = cli.invoke(app, ["--verbose", "doctor"])
    assert verbose.exit_code == 3 and "Traceback" in verbose.output


_PEAK_RSS = """
import resource, sys
from typer.testing import CliRunner
from rn50.cli import app
done = CliRunner().invoke(app, ["calibrate", "--images", sys.argv[1], "--method", "minmax", "--out", sys.argv[2]])
assert done.exit_code == 0, done.output
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024)  # peak resident set, MiB (Linux reports KiB)
"""


@pytest.mark.slow
def test_calibrating_on_a_folder_runs_in_bounded_memory(tiny_dir: Path, tmp_path: Path) -> None:
    """An image folder is read into a temporary file as it goes and calibrated on a few batches at a time: the peak
    resident set of `rn50 calibrate` on 900 images stays within 64 MiB of its peak on 100 (held in memory, the 800
    more would take 800 × 3 × 224 × 224 × 4 bytes = 460 MiB, twice that while stacked)."""
    from PIL import Image

    rng = np.random.default_rng(0)
    peaks = {}
    for count in (100, 900):
        folder = tmp_path / f"images-{count}"
        folder.mkdir()
        for i in range(count):
            Image.fromarray(rng.integers(0, 255, (48, 64, 3), dtype=np.uint8)).save(folder / f"{i:04d}.png")
        work = Path(shutil.copytree(tiny_dir, tmp_path / f"work-{count}"))
        done = subprocess.run(
            [sys.executable, "-c", _PEAK_RSS, str(folder), str(work)], capture_output=True, text=True, timeout=600
        )
        assert done.returncode == 0, done.stderr
        peaks[count] = int(done.stdout.split()[-1])
        table = json.loads(next((work / "calibration").glob("minmax-*.json")).read_text())
        assert table["images"] == count  # every image was used
    assert peaks[900] - peaks[100] <= 64, peaks


def test_a_full_disk_in_triton_repo_is_one_line_and_the_index_lists_what_was_written(
    work: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import errno

    from rn50.commands import triton_repo

    real, calls = shutil.copyfile, []

    def fills_up(src: object, dst: object) -> object:
        calls.append(dst)
        if len(calls) > 1:
            raise OSError(errno.ENOSPC, "No space left on device", str(dst))
        return real(src, dst)  # type: ignore[arg-type]

    monkeypatch.setattr(triton_repo.shutil, "copyfile", fills_up)
    done = cli.invoke(app, ["triton-repo", "--out", str(work), "--device", "cpu"])
    one_line_error(done, 2, "no space left on the device writing the Triton repository", "1 of 2 models", "--repo")
    repo = work / "triton"
    index = json.loads((repo / "rn50-repository.json").read_text())
    folders = {p.name for p in repo.iterdir() if p.is_dir()}
    assert [m["name"] for m in index["models"]] == sorted(folders) == ["onnx-fp32-cpu"]  # no folder the index misses


def _inode(path: Path) -> int | None:
    try:
        return path.stat().st_ino
    except FileNotFoundError:
        return None


@pytest.mark.slow  # a real quantize, interrupted at a moment: seconds each
@pytest.mark.parametrize("landing", ["tiny.int8.tensorrt.onnx", "tiny.int8.onnxruntime-cpu.onnx", "tiny.fp16.onnx"])
def test_an_interrupt_as_a_new_artifact_lands_leaves_file_and_manifest_agreeing(
    quantized_tiny: Path, tmp_path: Path, landing: str
) -> None:
    """SIGINT the moment a new file replaces the old one (its inode changes): the manifest records the file that is
    there, old or new, so `rn50 verify` passes. (Once the manifest was written only when quantize ended, and a
    Ctrl-C in between left a new file under the old record.) Another method makes files that differ from the old."""
    work = Path(shutil.copytree(quantized_tiny, tmp_path / "work"))
    target = work / landing
    before = _inode(target)
    proc = subprocess.Popen(
        ["rn50", "quantize", "--int8", "--fp16", "--count", "16", "--method", "percentile", "--out", str(work)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 120
    while _inode(target) == before and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.0005)
    landed = _inode(target) != before
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=120)
    assert landed, f"{landing} was never replaced: {stderr}"
    assert proc.returncode in (0, 130) and "Traceback" not in stderr, stderr
    verified = subprocess.run(["rn50", "verify", "--out", str(work)], capture_output=True, text=True, timeout=120)
    assert verified.returncode == 0, verified.stdout + verified.stderr
    assert not list(work.rglob("*.partial")) and not (work / LOCK).exists()

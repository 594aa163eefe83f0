import json
import re
import shutil
import subprocess
from pathlib import Path

import onnx
import pytest
from PIL import Image
from typer.testing import CliRunner

from rn50.artifacts import sha256_file
from rn50.cli import app

cli = CliRunner()
ONNX_ARTIFACTS = {"onnx-fp32", "onnx-fp16", "onnx-int8-tensorrt", "onnx-int8-onnxruntime-cpu"}
PT2_ARTIFACTS = {"pt2-fp32-cpu", "pt2-int8-cpu"}  # AOTInductor packages (the pt2 step)


@pytest.fixture()
def out(pipeline_run: tuple[Path, subprocess.CompletedProcess[str]], tmp_path: Path) -> Path:
    """A private copy of the quick-start work directory."""
    src, done = pipeline_run
    assert done.returncode == 0, done.stdout + done.stderr
    return Path(shutil.copytree(src, tmp_path / "rn50-out"))


def _artifact_digests(root: Path) -> dict[str, str]:
    manifest = json.loads((root / "manifest.json").read_text())
    return {name: a["sha256"] for name, a in manifest["artifacts"].items()}


def _files_match_manifest(root: Path) -> None:
    for name, digest in _artifact_digests(root).items():
        path = root / json.loads((root / "manifest.json").read_text())["artifacts"][name]["path"]
        assert sha256_file(path) == digest, name
    assert not list(root.rglob("*.partial"))


def test_pipeline_end_to_end_on_cpu(pipeline_run: tuple[Path, subprocess.CompletedProcess[str]]) -> None:
    root, done = pipeline_run
    assert done.returncode == 0, done.stdout + done.stderr
    manifest = json.loads((root / "manifest.json").read_text())
    assert ONNX_ARTIFACTS | PT2_ARTIFACTS | {"calibration-percentile", "pt2-int8-program"} <= set(manifest["artifacts"])
    assert set(manifest["steps"]) == {"export", "quantize", "pt2", "parity", "profile"}  # calibration: its own cache
    _files_match_manifest(root)
    parity = json.loads((root / "parity.json").read_text())
    passed = {r["artifact"] for r in parity["results"] if r["status"] == "pass"}
    assert parity["passed"] and passed == ONNX_ARTIFACTS | PT2_ARTIFACTS
    profile = json.loads((root / "profile.json").read_text())
    measured = {(r["runtime"], r["artifact"], r["batch"]) for r in profile["rows"] if r["status"] == "ok"}
    for artifact in ONNX_ARTIFACTS:
        assert {("onnxruntime-cpu", artifact, 1), ("onnxruntime-cpu", artifact, 8)} <= measured
    for artifact in PT2_ARTIFACTS:
        assert {("aoti-cpu", artifact, 1), ("aoti-cpu", artifact, 8)} <= measured
    assert ("torch-cpu", "pytorch-fp32", 1) in measured
    report = (root / "report.md").read_text()
    assert re.search(r"\| build-trt \| skipped \| [\d.]+ \| .*TensorRT", report)  # says why, not silently absent
    assert "Parity: **PASS**" in report and "Fastest at acceptable error, batch 1" in report
    # PyTorch's own path is weighed too: shipped, or named as the fastest way to stay with PyTorch
    assert "on **aoti-cpu**" in report.split("## What to ship", 1)[1].split("\n## ", 1)[0]
    assert "build-trt" in done.stdout and "skipped" in done.stdout


def test_report_html_renders_in_headless_chromium(out: Path, tmp_path: Path) -> None:
    browser = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
    if browser is None:
        pytest.skip("no headless Chromium here (.ci/run installs it: apt-get install chromium)")
    page = out / "report.html"
    text = page.read_text()
    assert (
        text.count('src="data:image/png;base64,') == 2 and "http://" not in text and "https://" not in text
    )  # self-contained
    # No sibling files: everything it shows is inside it. A script reports how wide the page lays out at 1280 px.
    measure = '<script>document.body.setAttribute("data-width", String(document.documentElement.scrollWidth));</script>'
    (tmp_path / "alone.html").write_text(text.replace("</body>", measure + "</body>"))
    flags = [browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--hide-scrollbars"]
    shot = tmp_path / "shot.png"
    uri = (tmp_path / "alone.html").as_uri()
    subprocess.run(
        [*flags, f"--screenshot={shot}", "--window-size=1280,2400", uri], capture_output=True, timeout=120, check=True
    )
    with Image.open(shot) as img:
        assert img.size == (1280, 2400)
        colours = img.convert("RGB").getcolors(maxcolors=1 << 20)
        assert colours is not None and len(colours) > 100  # text, tables and the embedded charts, not a blank page
    dom = subprocess.run(
        [*flags, "--window-size=1280,2400", "--dump-dom", uri], capture_output=True, text=True, timeout=120, check=True
    ).stdout
    width = re.search(r'data-width="(\d+)"', dom)
    assert width is not None and int(width.group(1)) <= 1280, "report.html is wider than a 1280 px window"
    headings = re.findall(r"<h2[^>]*>(.*?)</h2>", dom)
    assert headings[0] == "What to ship", headings  # the recommendation comes first
    ship = re.search(r"What to ship</h2>(.*?)<h2", dom, re.DOTALL)
    assert ship is not None and "ship <strong>" in ship.group(1) and "img/s" in ship.group(1), ship
    table = re.search(r'<table id="verdicts-table">(.*?)</table>', dom, re.DOTALL)
    assert table is not None, "the parity verdict table is missing"
    rows = re.findall(r"<tr>(.*?)</tr>", table.group(1), re.DOTALL)
    ran = [r for r in json.loads((out / "parity.json").read_text())["results"] if r["status"] != "skipped"]
    assert len(ran) >= len(ONNX_ARTIFACTS) and len(rows) == 1 + len(ran)  # a header, then every pair that ran
    assert all('class="pass">pass<' in r for r in rows[1:])


def test_second_run_reuses_every_step(out: Path) -> None:
    before = {p.name: p.stat().st_mtime_ns for p in out.glob("*.onnx")}
    result = cli.invoke(app, ["pipeline", "--out", str(out), "--json"])
    assert result.exit_code == 0, result.output
    steps = {s["name"]: s for s in json.loads(result.stdout)["steps"]}
    assert {n: s["status"] for n, s in steps.items()} == {
        "export": "reused",
        "calibrate": "reused",
        "quantize": "reused",
        "pt2": "reused",
        "build-trt": "skipped",
        "parity": "reused",
        "profile": "reused",
    }
    assert "TensorRT" in steps["build-trt"]["detail"]
    assert {p.name: p.stat().st_mtime_ns for p in out.glob("*.onnx")} == before


def test_failing_step_stops_the_run_and_keeps_earlier_artifacts(out: Path) -> None:
    artifacts, profile = _artifact_digests(out), sha256_file(out / "profile.json")
    result = cli.invoke(app, ["pipeline", "--out", str(out), "--threshold", "int8:min_top1=0.99", "--json"])
    assert result.exit_code == 1, result.output
    assert "parity:" in result.stderr and "top1_agreement" in result.stderr
    steps = {s["name"]: s["status"] for s in json.loads(result.stdout)["steps"]}
    assert steps["parity"] == "failed" and steps["profile"] == "not run" and steps["quantize"] == "reused"
    assert _artifact_digests(out) == artifacts and sha256_file(out / "profile.json") == profile
    _files_match_manifest(out)
    assert "| parity | failed |" in (out / "report.md").read_text()
    # The failed parity was not recorded as done: the next run checks again.
    again = cli.invoke(app, ["pipeline", "--out", str(out), "--only", "parity", "--json"])
    assert (
        again.exit_code == 0 and {s["name"]: s["status"] for s in json.loads(again.stdout)["steps"]}["parity"] == "ran"
    )


def test_ctrl_c_in_a_step_keeps_manifest_and_files_consistent(out: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from rn50.commands import profile as profiling

    def interrupted(*args: object, **kwargs: object) -> None:
        raise KeyboardInterrupt

    manifest = (out / "manifest.json").read_bytes()
    monkeypatch.setattr(profiling, "run_profile", interrupted)
    result = cli.invoke(app, ["pipeline", "--out", str(out), "--only", "profile", "--force"])
    assert result.exit_code == 130 and "interrupted" in result.output
    assert (out / "manifest.json").read_bytes() == manifest
    _files_match_manifest(out)


def test_a_changed_artifact_is_rebuilt_and_the_pipeline_says_why(out: Path) -> None:
    path = out / "resnet50.int8.onnxruntime-cpu.onnx"
    good = sha256_file(path)
    data = bytearray(path.read_bytes())
    data[len(data) // 2 : len(data) // 2 + 16] = bytes(16)
    path.write_bytes(bytes(data))
    result = cli.invoke(app, ["pipeline", "--out", str(out), "--only", "quantize", "--json"])
    assert result.exit_code == 0, result.output
    quantize = json.loads(result.stdout)["steps"][2]
    assert (
        quantize["status"] == "ran"
        and "ran again (resnet50.int8.onnxruntime-cpu.onnx changed since it was made)" in quantize["detail"]
    )
    assert "quantize runs again" in result.stderr
    assert sha256_file(path) == good  # deterministic: the same file as before the damage
    _files_match_manifest(out)


def test_a_file_for_the_other_cpu_class_is_made_again_and_judged_on_this_cpu(out: Path) -> None:
    """`--cpu` names the class the onnxruntime-cpu file is for; the pipeline makes it again when the class changes
    and says why. The other class's file then runs here: the avx2 form (7-bit weights) is faithful on a CPU with
    VNNI; the vnni form on a CPU without VNNI saturates, and parity fails with the cause and the fix."""
    from rn50.machine import AVX2, VNNI, cpu_info
    from rn50.runtimes.qdq_form import form_of

    this = cpu_info()["int8_class"]
    other = VNNI if this == AVX2 else AVX2
    result = cli.invoke(app, ["pipeline", "--out", str(out), "--only", "quantize,parity", "--cpu", other, "--json"])
    steps = {s["name"]: s for s in json.loads(result.stdout)["steps"]}
    assert (
        steps["quantize"]["status"] == "ran" and f"changed: cpu_class {this} → {other}" in steps["quantize"]["detail"]
    )
    form = form_of(onnx.load(str(out / "resnet50.int8.onnxruntime-cpu.onnx"), load_external_data=False))
    assert (form.cpu_class, form.weight_bits) == (other, 7 if other == AVX2 else 8)
    if other == AVX2:
        assert result.exit_code == 0 and steps["parity"]["status"] == "ran", result.output
    else:
        assert result.exit_code == 1 and steps["parity"]["status"] == "failed", result.output
        assert "saturate" in steps["parity"]["detail"] and "made for vnni-class CPUs" in steps["parity"]["detail"]
        assert "--cpu avx2" in result.stderr


def test_directory_of_another_model_is_refused_before_anything_is_written(out: Path) -> None:
    path = out / "manifest.json"
    data = json.loads(path.read_text())
    data["model"]["weights_sha256"] = "0" * 64
    path.write_text(json.dumps(data))
    before = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    result = cli.invoke(app, ["pipeline", "--out", str(out)])
    assert result.exit_code == 2 and "another model" in result.output
    assert {p: p.read_bytes() for p in out.rglob("*") if p.is_file()} == before  # the report too: nothing touched


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--skip", "deploy"], "unknown step"),
        (["--skip", "export", "--only", "parity"], "--skip and --only together"),
        (["--batch", "0"], "batch sizes must be >= 1"),
        (["--duration", "0"], "--duration 0"),
        (["--method", "median"], "median"),
    ],
)
def test_pipeline_bad_options_exit_2(tmp_path: Path, args: list[str], needle: str) -> None:
    result = cli.invoke(app, ["pipeline", "--out", str(tmp_path / "w"), *args])
    assert result.exit_code == 2 and needle in result.output, result.output
    assert not (tmp_path / "w").exists()  # refused before the work directory is made


def test_pipeline_refuses_a_file_as_output(tmp_path: Path) -> None:
    target = tmp_path / "file"
    target.write_text("keep me")
    result = cli.invoke(app, ["pipeline", "--out", str(target)])
    assert result.exit_code == 2 and "is a file" in result.output
    assert target.read_text() == "keep me"


def test_doctor_on_this_machine() -> None:
    result = cli.invoke(app, ["doctor", "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    checks = {c["name"]: c for c in data["checks"]}
    assert data["verdict"] == "ok" and data["broken"] == []
    assert {"python", "torch", "onnx", "onnxruntime", "tensorrt", "gpu", "cpu", "torchao"} <= set(checks)
    assert checks["onnxruntime"]["status"] == "ok" and "CPUExecutionProvider" in checks["onnxruntime"]["detail"]
    for c in checks.values():
        assert c["status"] in ("ok", "missing", "broken")
        assert c["status"] == "ok" or c["fix"], c
    plain = cli.invoke(app, ["doctor"])
    assert plain.exit_code == 0 and "onnxruntime" in plain.stdout


def test_doctor_flags_both_onnxruntime_packages_as_broken(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from rn50.commands import doctor

    monkeypatch.setattr(
        doctor,
        "ort_distributions",
        lambda: {"onnxruntime": ("1.31.1", tmp_path), "onnxruntime-gpu": ("1.31.1", tmp_path)},
    )
    (check,) = doctor.check_onnxruntime()
    assert check.status == "broken" and "share one module" in check.detail and "uninstall" in (check.fix or "")


def test_doctor_names_the_onnxruntime_package_that_shadows_the_other(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Installed in two folders (e.g. onnxruntime-gpu with pip --target on PYTHONPATH), the one imported is whole:
    doctor says which one runs and which is shadowed, and goes on checking it."""
    from rn50.commands import doctor

    real = doctor.ort_distributions()["onnxruntime"]
    monkeypatch.setattr(
        doctor, "ort_distributions", lambda: {"onnxruntime": real, "onnxruntime-gpu": ("1.31.1", tmp_path)}
    )
    check = doctor.check_onnxruntime()[0]
    assert check.status == "ok", check
    assert (
        f"onnxruntime {real[0]} (imported from {real[1]}; onnxruntime-gpu 1.31.1 in {tmp_path} is shadowed by it)"
        in check.detail
    )

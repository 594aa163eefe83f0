import errno
import json
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from onnx import numpy_helper
from typer.testing import CliRunner

from rn50.artifacts import WorkDir, sha256_file
from rn50.cli import app
from rn50.errors import UsageError
from rn50.exporter.config import check_opset
from rn50.exporter.onnx_file import ExportConfig, write_fp32_onnx
from rn50.exporter.verify import verify_onnx
from rn50.onnx_graph import opset_of, read_metadata
from rn50.weights import LoadedModel, load_model

cli = CliRunner()


def test_export_is_verified_and_recorded(export_dir: Path, fp32_onnx: Path, seeded50: LoadedModel) -> None:
    manifest = json.loads((export_dir / "manifest.json").read_text())
    entry = manifest["artifacts"]["onnx-fp32"]
    assert entry["verified"] is True
    assert entry["sha256"] == sha256_file(fp32_onnx)
    assert entry["parent_sha256"] == seeded50.fingerprint
    assert entry["versions"]["torch"] and entry["versions"]["onnxruntime"]
    assert manifest["model"]["depth"] == 50
    assert not list(export_dir.glob("*.partial"))


def test_graph_is_simplified_with_named_dynamic_io(fp32_onnx: Path) -> None:
    model = onnx.load(str(fp32_onnx))
    assert opset_of(model) == 18
    ops = {n.op_type for n in model.graph.node}
    assert "BatchNormalization" not in ops and "Conv" in ops  # BN folded into the convolutions
    (inp,), (out,) = model.graph.input, model.graph.output
    assert inp.name == "input" and out.name == "logits"
    dims = inp.type.tensor_type.shape.dim
    assert dims[0].dim_param and [d.dim_value for d in dims[1:]] == [3, 224, 224]
    assert out.type.tensor_type.shape.dim[0].dim_param


def test_metadata(fp32_onnx: Path, seeded50: LoadedModel) -> None:
    meta = read_metadata(onnx.load(str(fp32_onnx), load_external_data=False))
    assert meta["rn50.layout"] == "NCHW"
    assert meta["rn50.weights_sha256"] == seeded50.fingerprint
    pre = json.loads(meta["rn50.preprocess"])
    assert pre["crop"] == 224 and pre["mean"] == [0.485, 0.456, 0.406]
    assert "rn50.version" in meta and not any(k.startswith("onnxsim.") for k in meta)


@pytest.mark.parametrize("batch", [1, 2, 8, 16])
def test_dynamic_batch_matches_pytorch(fp32_onnx: Path, seeded50: LoadedModel, batch: int) -> None:
    import onnxruntime as ort

    session = ort.InferenceSession(str(fp32_onnx), providers=["CPUExecutionProvider"])
    x = np.random.default_rng(batch).standard_normal((batch, 3, 224, 224), dtype=np.float32)
    (got,) = session.run(["logits"], {"input": x})
    with torch.inference_mode():
        want = seeded50.model(torch.from_numpy(x)).numpy()
    assert got.shape == (batch, 1000)
    np.testing.assert_allclose(got, want, atol=1e-3, rtol=1e-3)


def test_verification_catches_a_tampered_initializer(fp32_onnx: Path, seeded50: LoadedModel, tmp_path: Path) -> None:
    model = onnx.load(str(fp32_onnx))
    init = next(i for i in model.graph.initializer if len(i.dims) == 4 and i.dims[0] == 256)  # one conv weight
    w = numpy_helper.to_array(init).copy()
    w.flat[:: max(1, w.size // 50)] += 0.5
    init.CopyFrom(numpy_helper.from_array(w, init.name))
    tampered = tmp_path / "tampered.onnx"
    onnx.save(model, str(tampered))
    result = verify_onnx(tampered, seeded50.model)
    assert not result.passed
    assert any("cosine_min" in f or "max_abs" in f for f in result.failures())
    assert verify_onnx(fp32_onnx, seeded50.model).passed


@pytest.mark.slow
def test_export_at_opset_17(tmp_path: Path) -> None:
    loaded = load_model("seeded", depth=18)
    result = write_fp32_onnx(ExportConfig(depth=18, opset=17), WorkDir(tmp_path), loaded=loaded)
    assert opset_of(onnx.load(str(result.path))) == 17
    assert result.verification is not None and result.verification.passed


@pytest.mark.parametrize("opset", [11, 16, 22])
def test_unsupported_opset(opset: int) -> None:
    with pytest.raises(UsageError, match=f"unsupported opset {opset}"):
        check_opset(opset)


@pytest.fixture(scope="module")
def r18_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("r18")
    result = cli.invoke(app, ["export", "--depth", "18", "--out", str(root)])
    assert result.exit_code == 0, result.output
    return root


def _manifest(root: Path) -> dict:
    return json.loads((root / "manifest.json").read_text())


def test_cli_export_prints_verification(r18_dir: Path) -> None:
    result = cli.invoke(app, ["export", "--depth", "18", "--out", str(r18_dir), "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["verified"] is True and [v["batch"] for v in data["verification"]] == [1, 2, 8]


@pytest.mark.parametrize(
    "failure, message",
    [(KeyboardInterrupt(), "interrupted"), (OSError(errno.ENOSPC, "No space left on device"), "no space left")],
)
def test_failed_write_keeps_the_previous_artifact(
    r18_dir: Path, monkeypatch: pytest.MonkeyPatch, failure: BaseException, message: str
) -> None:
    before = _manifest(r18_dir)
    onnx_file = r18_dir / "resnet18.fp32.onnx"
    digest = sha256_file(onnx_file)

    def broken_save(proto: onnx.ModelProto, path: str) -> None:
        Path(path).write_bytes(b"half an onnx file")
        raise failure

    monkeypatch.setattr("rn50.exporter.onnx_file.onnx.save_model", broken_save)
    result = cli.invoke(app, ["export", "--depth", "18", "--out", str(r18_dir)])
    assert result.exit_code == (130 if isinstance(failure, KeyboardInterrupt) else 2)
    assert message in result.output.lower()
    lines = result.output.strip().splitlines()
    assert lines[-1].startswith("error:") and not any(
        line.startswith("error:") for line in lines[:-1]
    )  # above it, status lines only
    assert sha256_file(onnx_file) == digest
    assert _manifest(r18_dir) == before
    assert not [p for p in r18_dir.iterdir() if p.name.startswith(".")]


def test_cli_bad_input_exit_codes(tmp_path: Path) -> None:
    a_file = tmp_path / "file"
    a_file.write_text("x")
    cases = [
        (["export", "--opset", "12", "--out", str(tmp_path)], "unsupported opset 12"),
        (["export", "--out", str(a_file)], "is a file, not a directory"),
        (["export", "--out", str(a_file / "sub")], "cannot write"),
        (["export", "--weights", str(tmp_path / "none.pth"), "--out", str(tmp_path)], "weights file not found"),
        (["export", "--depth", "20", "--out", str(tmp_path)], "unsupported ResNet depth 20"),
    ]
    for args, message in cases:
        result = cli.invoke(app, args)
        assert result.exit_code == 2, (args, result.output)
        assert message in result.output and "Traceback" not in result.output


def test_directory_of_another_model_is_refused(r18_dir: Path) -> None:
    result = cli.invoke(app, ["export", "--depth", "34", "--out", str(r18_dir)])
    assert result.exit_code == 2 and "holds artifacts of another model" in result.output


def test_an_interrupt_inside_the_exporter_stays_an_interrupt(monkeypatch: pytest.MonkeyPatch) -> None:
    """torch.export wraps a Ctrl-C in its own error; rn50 must still exit 130, not report a failed export."""
    import torch

    from rn50.exporter.onnx_export import torch_to_onnx
    from rn50.model import resnet

    def wrapped(*args: object, **kwargs: object) -> None:
        try:
            raise KeyboardInterrupt
        except KeyboardInterrupt as e:
            raise RuntimeError("Failed to export the model with torch.export.") from e

    monkeypatch.setattr(torch.onnx, "export", wrapped)
    with pytest.raises(KeyboardInterrupt):
        torch_to_onnx(resnet(18), opset=18)


def test_an_interrupt_a_library_swallowed_still_stops_every_write(tmp_path: Path) -> None:
    """The CLI's signal handler sets a flag besides raising: torch.export can swallow the KeyboardInterrupt and
    finish by another strategy, but nothing is committed after it, and the command still ends as interrupted."""
    from rn50.artifacts import atomic_write_text
    from rn50.errors import INTERRUPT

    INTERRUPT.set()
    try:
        with pytest.raises(KeyboardInterrupt):
            atomic_write_text(tmp_path / "artifact.txt", "complete, but written after Ctrl-C")
        assert not list(tmp_path.iterdir())  # neither the file nor its temporary
    finally:
        INTERRUPT.clear()


def _flip(path: Path) -> None:
    data = bytearray(path.read_bytes())
    middle = len(data) // 2
    data[middle : middle + 16] = bytes(b ^ 0xFF for b in data[middle : middle + 16])
    path.write_bytes(bytes(data))


def test_a_work_directory_keeps_its_exact_seeded_weights(
    r18_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Another CPU's kernels could rebuild the seeded weights a rounding apart: the directory's own copy is used."""
    import shutil

    import torch

    from rn50 import weights
    from rn50.weights import workdir_model

    real = weights.seeded_model

    def another_cpu(depth: int = 50, **kw: object) -> torch.nn.Module:
        model = real(depth)
        with torch.no_grad():
            model.fc.bias += 1e-6
        return model

    monkeypatch.setattr(weights, "seeded_model", another_cpu)
    work = Path(shutil.copytree(r18_dir, tmp_path / "work"))
    record = json.loads((work / "manifest.json").read_text())["model"]
    assert weights.state_fingerprint(workdir_model(WorkDir(work))) == record["weights_sha256"]
    _flip(work / "seeded-resnet18.pt")
    with pytest.raises(Exception, match="weights-seeded: .* changed since it was made"):
        workdir_model(WorkDir(work))


@pytest.mark.slow
def test_a_users_checkpoint_is_kept_and_read_after_the_original_moves(tmp_path: Path) -> None:
    """A checkpoint with a training wrapper's prefix and 10 classes: exported, then moved away; the work directory's
    own copy is what rn50 reads back (parity needs the PyTorch model)."""
    import torch

    from rn50.model import resnet
    from rn50.weights import state_fingerprint, workdir_model

    model = resnet(18, num_classes=10)
    ckpt = tmp_path / "my model.ckpt"
    torch.save({"epoch": 7, "state_dict": {f"model.{k}": v for k, v in model.state_dict().items()}}, ckpt)
    work = tmp_path / "work"
    done = cli.invoke(app, ["export", "--depth", "18", "--weights", str(ckpt), "--out", str(work), "--no-verify"])
    assert done.exit_code == 0, done.output
    assert "removed the prefix 'model.'" in done.output
    kept = _manifest(work)["artifacts"]["weights-checkpoint"]
    assert kept["path"] == "weights-resnet18.pt" and kept["extra"]["source"] == str(ckpt)
    ckpt.rename(tmp_path / "moved.ckpt")
    again = workdir_model(WorkDir(work))
    assert state_fingerprint(again) == state_fingerprint(model) and again.fc.out_features == 10

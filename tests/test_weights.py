from pathlib import Path

import numpy as np
import pytest
import torch

from rn50.errors import UsageError
from rn50.model import resnet
from rn50.samples import sample_crops
from rn50.weights import LoadedModel, guess_depth, load_model, state_fingerprint


def test_seeded_weights_are_deterministic_and_input_dependent(seeded50: LoadedModel) -> None:
    again = load_model("seeded", depth=50)
    assert again.fingerprint == seeded50.fingerprint
    with torch.inference_mode():
        logits = seeded50.model(torch.from_numpy(sample_crops(16, split="evaluation"))).numpy()
    assert len(set(logits.argmax(1).tolist())) >= 4  # not one class for every image
    assert np.std(logits, axis=0).mean() > 0.1


@pytest.mark.parametrize("wrap", ["plain", "state_dict", "model", "module-prefix"])
def test_checkpoint_round_trip(tmp_path: Path, wrap: str) -> None:
    model = resnet(18)
    state = model.state_dict()
    obj: object = {
        "plain": state,
        "state_dict": {"epoch": 3, "state_dict": state},
        "model": {"model": state, "optimizer": {}},
        "module-prefix": {f"module.{k}": v for k, v in state.items()},
    }[wrap]
    path = tmp_path / "ckpt.pth"
    torch.save(obj, path)
    loaded = load_model(path, depth=18)
    assert loaded.fingerprint == state_fingerprint(model)
    assert not loaded.model.training


def test_wrong_architecture_lists_keys_and_guesses_depth(tmp_path: Path) -> None:
    path = tmp_path / "r18.pth"
    torch.save(resnet(18).state_dict(), path)
    with pytest.raises(UsageError, match=r"does not fit ResNet-50: \d+ missing keys: .*shape mismatches.*pass --depth 18"):
        load_model(path, depth=50)


def test_guess_depth() -> None:
    for depth in (18, 34, 50, 101):
        assert guess_depth(resnet(depth).state_dict()) == depth
    assert guess_depth({"foo": torch.zeros(1)}) is None


def test_truncated_checkpoint(tmp_path: Path) -> None:
    path = tmp_path / "t.pth"
    torch.save(resnet(18).state_dict(), path)
    path.write_bytes(path.read_bytes()[:5000])
    with pytest.raises(UsageError, match="not a torch.save archive"):
        load_model(path, depth=18)


def test_non_checkpoint_files(tmp_path: Path) -> None:
    text = tmp_path / "notes.txt"
    text.write_text("hello")
    with pytest.raises(UsageError, match="not a torch.save archive"):
        load_model(text)
    pickled = tmp_path / "module.pth"
    torch.save(resnet(18), pickled)
    with pytest.raises(UsageError, match="pickled Python objects"):
        load_model(pickled, depth=18)
    empty = tmp_path / "empty.pth"
    torch.save({"epoch": 1}, empty)
    with pytest.raises(UsageError, match="holds no state dict"):
        load_model(empty)
    with pytest.raises(UsageError, match="weights file not found"):
        load_model(tmp_path / "missing.pth")
    with pytest.raises(UsageError, match="is a directory"):
        load_model(tmp_path)


def test_fine_tuned_head_loads_with_its_class_count(tmp_path: Path) -> None:
    path = tmp_path / "ft.pth"
    torch.save(resnet(18, num_classes=10).state_dict(), path)
    assert load_model(path, depth=18).model.fc.out_features == 10

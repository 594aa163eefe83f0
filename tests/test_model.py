import pytest
import torch

from rn50.errors import UsageError
from rn50.model import VARIANTS, Bottleneck, resnet
from rn50.summary import summarize

# torchvision's published parameter counts for resnet18 ... resnet152.
PARAMS = {18: 11_689_512, 34: 21_797_672, 50: 25_557_032, 101: 44_549_160, 152: 60_192_808}


@pytest.mark.parametrize("depth", sorted(PARAMS))
def test_parameter_count_and_output_shape(depth: int) -> None:
    model = resnet(depth).eval()
    assert sum(p.numel() for p in model.parameters()) == PARAMS[depth]
    with torch.inference_mode():
        assert model(torch.zeros(2, 3, 64, 64)).shape == (2, 1000)


def test_resnet50_keys_follow_torchvision() -> None:
    keys = list(resnet(50).state_dict())
    assert len(keys) == 320  # 161 parameters + 3 buffers for each of 53 BatchNorms
    for key in (
        "conv1.weight",
        "bn1.num_batches_tracked",
        "layer1.0.downsample.0.weight",
        "layer1.0.downsample.1.running_var",
        "layer3.5.conv2.weight",
        "layer4.2.bn3.bias",
        "fc.weight",
        "fc.bias",
    ):
        assert key in keys
    assert not any(k.startswith("layer1.1.downsample") for k in keys)  # identity shortcut inside a stage


def test_projection_shortcuts_only_where_shapes_change() -> None:
    model = resnet(50)
    for name in ("layer1", "layer2", "layer3", "layer4"):
        stage = getattr(model, name)
        assert stage[0].downsample is not None
        assert all(b.downsample is None for b in stage[1:])
    proj = model.layer2[0].downsample[0]
    assert proj.kernel_size == (1, 1) and proj.stride == (2, 2)
    assert model.layer2[0].conv2.stride == (2, 2) and model.layer2[0].conv1.stride == (1, 1)  # v1.5


def test_variants_follow_the_paper_table() -> None:
    assert VARIANTS[50].layers == (3, 4, 6, 3) and VARIANTS[50].block is Bottleneck
    assert VARIANTS[152].layers == (3, 8, 36, 3)


def test_bad_depth_names_the_choices() -> None:
    with pytest.raises(UsageError, match=r"unsupported ResNet depth 42 .*18, 34, 50, 101, 152"):
        resnet(42)


def test_stage_table_of_resnet50() -> None:
    s = summarize(resnet(50))
    assert s.params == PARAMS[50]
    assert 4.0e9 < s.macs < 4.2e9
    assert [r.output_size for r in s.stages] == [
        (64, 56, 56),
        (256, 56, 56),
        (512, 28, 28),
        (1024, 14, 14),
        (2048, 7, 7),
        (1000,),
    ]
    assert [r.blocks for r in s.stages[1:5]] == [3, 4, 6, 3]

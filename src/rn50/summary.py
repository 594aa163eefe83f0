"""The stage table of a built model, measured from the model itself (shapes by a forward pass)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
from torch import nn

if TYPE_CHECKING:
    from rn50.model import ResNet

# The paper's stage names, and the modules that make up each.
STAGES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("conv1", ("conv1", "bn1", "relu", "maxpool")),
    ("conv2_x", ("layer1",)),
    ("conv3_x", ("layer2",)),
    ("conv4_x", ("layer3",)),
    ("conv5_x", ("layer4",)),
    ("pool+fc", ("avgpool", "fc")),
)


@dataclass(frozen=True)
class StageRow:
    name: str
    output_size: tuple[int, ...]  # (C, H, W) or (classes,)
    blocks: int
    channels: int
    params: int
    macs: int


@dataclass(frozen=True)
class ModelSummary:
    depth: int
    image_size: int
    stages: tuple[StageRow, ...]

    @property
    def params(self) -> int:
        return sum(s.params for s in self.stages)

    @property
    def macs(self) -> int:
        return sum(s.macs for s in self.stages)


def _layer_macs(module: nn.Module, output: torch.Tensor) -> int:
    if isinstance(module, nn.Conv2d):
        kh, kw = module.kernel_size
        return output.numel() * (module.in_channels // module.groups) * kh * kw
    if isinstance(module, nn.Linear):
        return output.numel() * module.in_features
    return 0


def summarize(model: ResNet, *, image_size: int = 224) -> ModelSummary:
    """Output size, blocks, channels, parameters and multiply-accumulates of each stage."""
    owner: dict[nn.Module, str] = {}
    for stage, names in STAGES:
        for name in names:
            for sub in getattr(model, name).modules():
                owner[sub] = stage
    macs = {stage: 0 for stage, _ in STAGES}
    shapes: dict[str, tuple[int, ...]] = {}

    def count(module: nn.Module, _inputs: object, output: torch.Tensor) -> None:
        macs[owner[module]] += _layer_macs(module, output)

    def record(stage: str):  # noqa: ANN202 - hook factory
        def hook(_m: nn.Module, _i: object, output: torch.Tensor) -> None:
            shapes[stage] = tuple(output.shape[1:])

        return hook

    handles = [m.register_forward_hook(count) for m in owner if isinstance(m, (nn.Conv2d, nn.Linear))]
    for stage, names in STAGES:
        handles.append(getattr(model, names[-1]).register_forward_hook(record(stage)))
    try:
        was_training = model.training
        model.eval()
        with torch.inference_mode():
            model(torch.zeros(1, 3, image_size, image_size))
        model.train(was_training)
    finally:
        for h in handles:
            h.remove()
    shapes["pool+fc"] = (model.fc.out_features,)

    rows = []
    for stage, names in STAGES:
        mods = [getattr(model, n) for n in names]
        params = sum(p.numel() for m in mods for p in m.parameters())
        blocks = len(mods[0]) if isinstance(mods[0], nn.Sequential) else 1
        rows.append(StageRow(stage, shapes[stage], blocks, shapes[stage][0], params, macs[stage]))
    return ModelSummary(model.depth, image_size, tuple(rows))

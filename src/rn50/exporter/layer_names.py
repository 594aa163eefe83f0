"""Which PyTorch module each Conv/Gemm node of an rn50 ONNX graph computes (``layer4.2.conv3``), so that reports
name layers as users know them, with the ONNX node beside it.

Found from the weights, not from names: the dynamo exporter's name scopes do not survive simplification (onnxsim
folds each BatchNorm into the convolution before it and drops node metadata), and a Q/DQ file keeps its FP32 graph's
node names. A folded convolution's weights are its module's with each output channel scaled by the BatchNorm
(W'[c] = s_c · W[c]), so every channel of the two points the same way (|cosine| = 1); the classifier's are the
module's own (Gemm, possibly transposed)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import onnx
from onnx import numpy_helper

from rn50.onnx_graph import LAYER_OPS, producers, residual_adds

if TYPE_CHECKING:
    from torch import nn

_TOLERANCE = 1e-4  # 1 − |cosine| per output channel; float32 rounding of the fold is ~1e-7


def _same_up_to_channel_scale(a: np.ndarray, b: np.ndarray) -> bool:
    x = a.reshape(len(a), -1).astype(np.float64)
    y = b.reshape(len(b), -1).astype(np.float64)
    nx, ny = np.linalg.norm(x, axis=1), np.linalg.norm(y, axis=1)
    live = (nx > 0) & (ny > 0)
    if not live.any() or ((nx > 0) != (ny > 0)).any():
        return False
    cos = (x[live] * y[live]).sum(1) / (nx[live] * ny[live])
    return bool((np.abs(cos) > 1 - _TOLERANCE).all())


def _node_weights(model: onnx.ModelProto) -> dict[str, np.ndarray]:
    """Each Conv/Gemm node's float weights, as (out, …); nodes whose weights are not a float initializer are left
    out (map the FP32 graph: a Q/DQ file keeps its node names)."""
    inits = {i.name: i for i in model.graph.initializer}
    out = {}
    for node in model.graph.node:
        if node.op_type not in LAYER_OPS or len(node.input) < 2 or node.input[1] not in inits:
            continue
        w = numpy_helper.to_array(inits[node.input[1]])
        if not np.issubdtype(w.dtype, np.floating):
            continue
        if node.op_type == "Gemm" and not any(a.name == "transB" and a.i for a in node.attribute):
            w = w.T  # Gemm without transB holds (in, out)
        out[node.name] = w
    return out


def module_names(model: onnx.ModelProto, torch_model: nn.Module) -> dict[str, str]:
    """ONNX node name → PyTorch module name for every Conv/Gemm node whose weights are one module's."""
    from torch import nn

    candidates: dict[tuple[int, ...], list[tuple[str, np.ndarray]]] = {}
    for name, module in torch_model.named_modules():
        if isinstance(module, nn.Conv2d | nn.Linear):
            w = module.weight.detach().cpu().numpy()
            candidates.setdefault(tuple(w.shape), []).append((name, w))
    found: dict[str, str] = {}
    taken: set[str] = set()
    for node, w in _node_weights(model).items():
        for name, ref in candidates.get(tuple(w.shape), []):
            if name not in taken and _same_up_to_channel_scale(w, ref):
                found[node] = name
                taken.add(name)
                break
    return found


def residual_names(model: onnx.ModelProto, names: dict[str, str]) -> dict[str, str]:
    """ONNX node name → ``<block>.add`` for each residual Add fed by a named Conv (``layer1.0.add``: torchvision's
    Bottleneck adds in ``forward``, so the Add has no module of its own); the block is the Convs' common parent."""
    made_by = producers(model.graph)
    found = {}
    for node in residual_adds(model.graph):
        modules = [names[made_by[i].name].split(".") for i in node.input if i in made_by and made_by[i].name in names]
        if not modules:
            continue
        block = modules[0][:-1] if len(modules) == 1 else []
        if len(modules) > 1:
            for parts in zip(*modules, strict=False):
                if len(set(parts)) > 1:
                    break
                block.append(parts[0])
        if block:
            found[node.name] = ".".join([*block, "add"])
    return found


def layer_label(node: str, names: dict[str, str]) -> str:
    """``layer4.2.conv3 (node_Conv_858)``, or the node alone where no module is known."""
    module = names.get(node)
    return f"{module} ({node})" if module and module != node else node

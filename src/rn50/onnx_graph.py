"""Small helpers over an ONNX graph, shared by every layer that edits or reads one: node order, who makes and who
reads a tensor, the opset, rn50's metadata. Nothing here runs a model."""

from __future__ import annotations

from collections import defaultdict
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pathlib import Path

    import onnx

LAYER_OPS = ("Conv", "Gemm")  # the layers with weights: what INT8 quantizes, what reports name by PyTorch module


def toposort(graph: onnx.GraphProto) -> None:
    """Reorder ``graph.node`` so every node comes after the producers of its inputs (stable otherwise)."""
    produced_by = {o: i for i, n in enumerate(graph.node) for o in n.output if o}
    nodes = list(graph.node)
    done: set[int] = set()
    order: list[int] = []
    for start in range(len(nodes)):
        stack = [(start, False)]
        while stack:
            idx, expanded = stack.pop()
            if idx in done:
                continue
            if expanded:
                done.add(idx)
                order.append(idx)
                continue
            stack.append((idx, True))
            for name in reversed(nodes[idx].input):
                dep = produced_by.get(name)
                if dep is not None and dep not in done:
                    stack.append((dep, False))
    del graph.node[:]
    graph.node.extend(nodes[i] for i in order)


def producers(graph: onnx.GraphProto) -> dict[str, onnx.NodeProto]:
    """Tensor name → the node that makes it."""
    return {o: n for n in graph.node for o in n.output}


def dequantized(tensor: str, made_by: dict[str, onnx.NodeProto]) -> bool:
    """``tensor`` is a DequantizeLinear's output (``made_by``: ``producers`` of its graph)."""
    node = made_by.get(tensor)
    return node is not None and node.op_type == "DequantizeLinear"


def residual_adds(graph: onnx.GraphProto) -> list[onnx.NodeProto]:
    """The Adds of two activations (no initializer among their inputs): a ResNet's residual Adds, in graph order."""
    inits = {i.name for i in graph.initializer}
    return [n for n in graph.node if n.op_type == "Add" and not any(i in inits for i in n.input)]


def consumers(graph: onnx.GraphProto) -> dict[str, list[onnx.NodeProto]]:
    """Tensor name → the nodes that read it."""
    out: dict[str, list[onnx.NodeProto]] = defaultdict(list)
    for node in graph.node:
        for name in node.input:
            out[name].append(node)
    return out


def opset_of(model: onnx.ModelProto) -> int:
    """The default-domain opset."""
    return next(o.version for o in model.opset_import if o.domain in ("", "ai.onnx"))


def stamp_metadata(model: onnx.ModelProto, meta: dict[str, str]) -> None:
    """Set rn50's metadata entries (and drop onnxsim's bookkeeping, which users would read instead of ours)."""
    kept = [p for p in model.metadata_props if not p.key.startswith("onnxsim.")]
    del model.metadata_props[:]
    model.metadata_props.extend(kept)
    existing = {p.key: p for p in model.metadata_props}
    for key, value in meta.items():
        prop = existing.get(key) or model.metadata_props.add()
        prop.key, prop.value = key, value


def read_metadata(model: onnx.ModelProto) -> dict[str, str]:
    return {p.key: p.value for p in model.metadata_props}


def load_header(path: Path, *, fix: str = "pass an ONNX model file") -> onnx.ModelProto:
    """The ONNX model at ``path`` without its external weights, or a one-line refusal naming the file when it is not
    one (a text file, another format, a truncated download): what every reader of a user's or a manifest's file
    calls."""
    import onnx
    from google.protobuf.message import DecodeError

    from rn50.errors import UsageError

    try:
        model = onnx.load(str(path), load_external_data=False)
    except (DecodeError, ValueError, RuntimeWarning, UnicodeDecodeError) as e:
        reason = str(e).strip().splitlines()[0][:120] if str(e).strip() else type(e).__name__
        raise UsageError(f"{path} is not an ONNX model ({reason})", fix=fix) from None
    except OSError as e:
        raise UsageError(f"{path} could not be read ({e.strerror or e})", fix=fix) from None
    if not model.graph.node and not model.graph.input:
        raise UsageError(f"{path} is not an ONNX model (no graph in it)", fix=fix)
    return model

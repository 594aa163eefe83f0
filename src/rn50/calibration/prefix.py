"""Run variants of a model from the last tensor they share with it: the budget search's evaluations, made cheaper
without changing a number.

The budget search runs dozens of files that differ from one base file (the fully quantized model, later the
file kept so far) in a layer or two. Every node upstream of the first change computes the same tensors as in
the base, on the same crops, in the same batches. So the base is run once with its *cut tensors* as extra
outputs — activation tensors every path from the input to the logits passes through (a ResNet block's output)
— and a variant is run from the latest cut whose whole upstream is the base's own (the same nodes, the same
initializers): only the nodes downstream of it, fed the cached tensor. ONNX Runtime's CPU provider runs the same
kernels on the same inputs, so the logits are bit-identical to a full run (the tests check it). Cuts are kept
deepest first within a memory budget: a deep cut saves the most work and holds the smallest tensor.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Callable

    import numpy as np
    import onnx

MEMORY_BYTES = 384 * 2**20  # cached cut tensors for every crop, at most
HEAVY_OPS = ("Conv", "ConvTranspose", "Gemm", "MatMul")  # the work a cut saves; elementwise ops around it are cheap


def cut_tensors(graph: onnx.GraphProto) -> list[str]:
    """The graph's cut tensors in node order (``graph`` topologically sorted): after the node that makes one, it is
    the only activation tensor a later node or the output still reads."""
    consts = {i.name for i in graph.initializer}
    for node in graph.node:  # a node that reads no activation makes a constant (e.g. Constant)
        if all(not t or t in consts for t in node.input):
            consts.update(node.output)
    outputs = {o.name for o in graph.output}
    last_read = {t: i for i, n in enumerate(graph.node) for t in n.input if t and t not in consts}
    live = {i.name for i in graph.input if i.name not in consts}
    cuts = []
    for i, node in enumerate(graph.node):
        live.update(t for t in node.output if t and t not in consts)
        live = {t for t in live if last_read.get(t, -1) > i or t in outputs}
        if len(live) == 1 and not live & outputs:
            cuts.append(next(iter(live)))
    return cuts


def upstream(graph: onnx.GraphProto, tensor: str) -> set[str]:
    """Names of the nodes ``tensor`` depends on (its producer included)."""
    made_by = {o: n for n in graph.node for o in n.output}
    seen: set[str] = set()
    stack = [tensor]
    while stack:
        node = made_by.get(stack.pop())
        if node is not None and node.name not in seen:
            seen.add(node.name)
            stack.extend(node.input)
    return seen


def suffix(model: onnx.ModelProto, cut: str, dtype: np.dtype, extra_outputs: list[str]) -> onnx.ModelProto:
    """The part of ``model`` downstream of ``cut``, with ``cut`` (of ``dtype``) as its input and ``extra_outputs`` as
    outputs too."""
    from onnx import helper

    above = upstream(model.graph, cut)
    nodes = [n for n in model.graph.node if n.name not in above]
    read = {t for n in nodes for t in n.input}
    graph = helper.make_graph(
        nodes,
        model.graph.name,
        [helper.make_tensor_value_info(cut, helper.np_dtype_to_tensor_dtype(dtype), None)],
        [*model.graph.output, *(helper.make_empty_tensor_value_info(t) for t in extra_outputs)],
        [i for i in model.graph.initializer if i.name in read],
    )
    out = helper.make_model(graph, opset_imports=model.opset_import, ir_version=model.ir_version)
    return out


class PrefixCache:
    """The base model's cut tensors on ``crops``; ``logits`` runs a variant from the latest one it shares with it."""

    def __init__(self, run: Callable[[onnx.ModelProto, np.ndarray, list[str]], list[np.ndarray]], crops: np.ndarray):
        """``run(model, crops, names)``: the logits and the named tensors of ``model`` on ``crops`` (fed to its one
        input, in the caller's batches)."""
        self.run, self.crops = run, crops
        self.base: onnx.ModelProto | None = None
        self.names: list[str] = []  # the cuts cached: the deepest that fit in MEMORY_BYTES for every crop
        self.cache: dict[str, np.ndarray] = {}
        self._last: tuple[int, str | None, dict[str, np.ndarray]] | None = (
            None  # (id of variant, start cut, its cut outputs)
        )

    def _choose(self, model: onnx.ModelProto) -> list[str]:
        """One cut per stretch without a Conv/Gemm between cuts (they save the same work), the smallest of it (an
        int8 QuantizeLinear output rather than the float tensors around it); the deepest stretches first, within
        MEMORY_BYTES for every crop."""
        names = cut_tensors(model.graph)
        sizes = dict(
            zip(names, (a.nbytes * len(self.crops) for a in self.run(model, self.crops[:1], names)[1:]), strict=True)
        )
        position = {o: i for i, n in enumerate(model.graph.node) for o in n.output}
        heavy = [i for i, n in enumerate(model.graph.node) if n.op_type in HEAVY_OPS]
        stretches: list[list[str]] = []
        for name in names:
            if stretches and not any(position[stretches[-1][-1]] < i <= position[name] for i in heavy):
                stretches[-1].append(name)
            else:
                stretches.append([name])
        kept, used = [], 0
        for stretch in reversed(stretches):
            best = min(reversed(stretch), key=lambda n: sizes[n])  # the smallest, the latest of equals
            if used + sizes[best] <= MEMORY_BYTES:
                kept.append(best)
                used += sizes[best]
        return kept

    def rebase(self, model: onnx.ModelProto) -> None:
        """Make ``model`` the base: from the outputs of its last ``logits`` run on every crop, else by running it."""
        last = self._last
        if last is not None and last[0] == id(model):
            _, start, outputs = last
            values = outputs
            if start is not None and self.base is not None:  # the cuts above its start are the old base's
                shared = upstream(self.base.graph, start)
                made_by = {o: n.name for n in self.base.graph.node for o in n.output}
                values = {c: v for c, v in self.cache.items() if c == start or made_by.get(c) in shared} | outputs
        else:
            self.names = self.names or self._choose(model)
            names = [c for c in cut_tensors(model.graph) if c in self.names]
            values = dict(zip(names, self.run(model, self.crops, names)[1:], strict=True))
        self.base, self.cache, self._last = model, values, None

    def start(self, model: onnx.ModelProto) -> str | None:
        """The deepest cached cut that is a cut of ``model`` too and whose upstream in it is the base's own: the same
        nodes reading the same initializers. None: nothing shared, run it whole."""
        if self.base is None:
            return None
        base_nodes = {n.name: n for n in self.base.graph.node}
        nodes = {n.name: n for n in model.graph.node}
        base_inits = {i.name: i for i in self.base.graph.initializer}
        inits = {i.name: i for i in model.graph.initializer}
        changed = {t for t in inits.keys() | base_inits.keys() if inits.get(t) != base_inits.get(t)}
        own = set(cut_tensors(model.graph))  # a cut of the base may not be one of the variant (a node reading past it)
        for cut in reversed(cut_tensors(self.base.graph)):
            if cut not in self.cache or cut not in own:
                continue
            above = upstream(model.graph, cut)
            if (
                above
                and above == upstream(self.base.graph, cut)
                and all(nodes[n] == base_nodes[n] and not changed.intersection(nodes[n].input) for n in above)
            ):
                return cut
        return None

    def logits(self, model: onnx.ModelProto, count: int | None = None) -> np.ndarray:
        """``model``'s logits on the first ``count`` crops, run from its shared cut where it has one."""
        crops = self.crops[:count]
        self.names = self.names or self._choose(model)
        cut = self.start(model)
        made_by = {o: n.name for n in model.graph.node for o in n.output}
        above = upstream(model.graph, cut) if cut is not None else set()
        later = [c for c in cut_tensors(model.graph) if c in self.names and c != cut and made_by.get(c) not in above]
        if cut is None:
            outs = self.run(model, crops, later)
        else:
            cached = self.cache[cut][: len(crops)]
            outs = self.run(suffix(model, cut, cached.dtype, later), cached, later)
        if len(crops) == len(self.crops):
            self._last = (id(model), cut, dict(zip(later, outs[1:], strict=True)))
        return outs[0]

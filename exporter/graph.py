"""Small ONNX graph helpers."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import onnx


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

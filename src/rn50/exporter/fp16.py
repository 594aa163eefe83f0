"""FP16: the simplified FP32 graph converted to FP16 compute with float32 input and output (Cast at the
edges), by ONNX Runtime's float16 converter. Nodes whose FP32 outputs come near FP16's range on the
sample crops stay in FP32, so nothing that would overflow is left unguarded."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from rn50.onnx_graph import toposort

if TYPE_CHECKING:
    import onnx

log = logging.getLogger(__name__)

FP16_MAX = 65504.0
SAFETY = 4.0  # keep a node in FP32 when its observed range reaches FP16_MAX / SAFETY


def overflow_risks(model: onnx.ModelProto, ranges: dict[str, tuple[float, float]]) -> list[str]:
    """Names of nodes with an output whose observed magnitude is within SAFETY of FP16's maximum."""
    limit = FP16_MAX / SAFETY
    return [
        n.name for n in model.graph.node if any(max(map(abs, ranges.get(o, (0.0, 0.0)))) >= limit for o in n.output)
    ]


def to_fp16(model: onnx.ModelProto, ranges: dict[str, tuple[float, float]]) -> tuple[onnx.ModelProto, list[str]]:
    from onnxruntime.transformers.float16 import convert_float_to_float16

    keep = overflow_risks(model, ranges)
    if keep:
        log.warning("keeping %d node(s) in FP32 (outputs near FP16's range): %s", len(keep), ", ".join(keep[:5]))
    converted = convert_float_to_float16(model, keep_io_types=True, node_block_list=keep or None)
    toposort(converted.graph)  # the converter appends its edge Casts at the end
    return converted, keep

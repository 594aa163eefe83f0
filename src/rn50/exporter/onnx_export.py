"""torch.export-based ONNX export (the dynamo exporter) with a dynamic batch axis."""

from __future__ import annotations

import contextlib
import io
import logging
import warnings
from typing import TYPE_CHECKING

import torch

from rn50.errors import CheckFailed, check_interrupt
from rn50.exporter.config import check_opset
from rn50.words import opt

if TYPE_CHECKING:
    import onnx

log = logging.getLogger(__name__)
# torch.onnx warns about every torchvision op it cannot register when torchvision is absent; noise here.
logging.getLogger("torch.onnx").setLevel(logging.ERROR)

INPUT_NAME = "input"
OUTPUT_NAME = "logits"
NATIVE_OPSET = 18  # the dynamo exporter's lowest native opset; lower ones are converted after simplification
EXAMPLE_BATCH = 2  # >= 2, so torch.export does not specialise the batch axis to 1


def _interrupted(error: BaseException) -> bool:
    """Whether a KeyboardInterrupt is anywhere in ``error``'s chain of causes."""
    seen: set[int] = set()
    cause: BaseException | None = error
    while cause is not None and id(cause) not in seen:
        if isinstance(cause, KeyboardInterrupt):
            return True
        seen.add(id(cause))
        cause = cause.__cause__ or cause.__context__
    return False


def torch_to_onnx(model: torch.nn.Module, *, opset: int, image_size: int = 224) -> onnx.ModelProto:
    """Export ``model`` (eval mode) with input ``input`` (N,3,H,W) and output ``logits``, batch dynamic."""
    check_opset(opset)
    model.eval()
    example = torch.randn(EXAMPLE_BATCH, 3, image_size, image_size, generator=torch.Generator().manual_seed(0))
    batch = torch.export.Dim("batch", min=1, max=65536)
    quiet = io.StringIO()
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(quiet), torch.inference_mode():
            warnings.simplefilter("ignore")
            program = torch.onnx.export(
                model,
                (example,),
                None,
                dynamo=True,
                opset_version=max(opset, NATIVE_OPSET),
                input_names=[INPUT_NAME],
                output_names=[OUTPUT_NAME],
                dynamic_shapes=({0: batch},),
                optimize=True,
                verbose=False,
            )
    except Exception as e:  # the exporter raises many types; all mean the same thing to the user
        if _interrupted(e):  # torch.export wraps a Ctrl-C/SIGTERM in its own error: it is still an interrupt
            raise KeyboardInterrupt from e
        log.debug("exporter output:\n%s", quiet.getvalue())
        raise CheckFailed(
            f"torch.onnx.export failed: {str(e).splitlines()[0] if str(e) else type(e).__name__}",
            fix=f"run with {opt('verbose')} for the exporter's report; the model must be traceable by torch.export",
        ) from e
    check_interrupt()  # torch.export swallows a KeyboardInterrupt in some of its strategies and tries the next
    if program is None:
        raise CheckFailed("torch.onnx.export returned no model", fix="upgrade torch and onnxscript")
    return program.model_proto

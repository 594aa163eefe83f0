"""``python tests/engine_check.py MODEL.onnx FEED.npy``: rn50's engine check of one INT8 Q/DQ file on ONNX Runtime
CPU and OpenVINO, as parity runs it, printed as JSON. The tests run it under ``qemu-x86_64 -cpu Haswell`` so that
the INT8 kernels of a CPU without VNNI run on any x86 machine (an emulator computes what that CPU computes; its
speed says nothing)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np


def main(model: Path, feed: Path) -> dict[str, object]:
    from rn50.evaluation.comparison import compare_all, run_all
    from rn50.evaluation.pairs import qdq_form
    from rn50.evaluation.semantics import semantics
    from rn50.feeds import FeedSet
    from rn50.machine import cpu_info
    from rn50.runtimes.registry import Pair, unavailable_reason

    images = np.load(feed)
    feeds = FeedSet("arrays", feed.name, images, feed.name)
    form = qdq_form(model)
    targets = [
        Pair(r, "int8", model.name, model, None, None, form)
        for r in ("onnxruntime-cpu", "openvino-cpu")
        if unavailable_reason(r) is None
    ]
    runs, files = run_all(targets, feeds, len(images), threads=1, strict_runtimes=True, say=lambda _m: None)
    reference = semantics(
        model, feeds, len(images), threads=1
    )  # the file is its own FP32 here: only the engine is judged
    from rn50.metrics import thresholds_for

    results, _ = compare_all(runs, reference, files, None, thresholds=thresholds_for)
    return {
        "int8_class": cpu_info()["int8_class"],
        "results": [
            {
                "runtime": r.runtime,
                "status": r.status,
                "failures": list(r.failures),
                "cause": r.cause,
                "fix": r.fix,
                "engine_cosine_mean": r.fidelity.cosine_mean if r.fidelity else None,
            }
            for r in results
        ],
    }


if __name__ == "__main__":
    print(json.dumps(main(Path(sys.argv[1]), Path(sys.argv[2]))))

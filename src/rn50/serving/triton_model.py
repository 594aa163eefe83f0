"""Triton Python-backend model that serves one rn50 artifact (copied into the model repository as
``1/model.py`` by ``rn50 serve``). It runs in Triton's Python stub process, which embeds the interpreter rn50
runs on; the folders of that interpreter's ``sys.path`` are passed as a parameter, so that a virtual
environment's packages (and rn50 itself) are found there too.

Every request gets its own response: an error for a request the model refuses (NaN or Inf in it: INVALID_ARG,
which Triton's HTTP endpoint sends as 400), answers for the others of its batch (Triton's per-request error,
which PyTriton's batch callables cannot give).
"""

from __future__ import annotations

import json
import os
import site
from typing import Any


class TritonPythonModel:
    def initialize(self, args: dict[str, str]) -> None:
        params = {k: v["string_value"] for k, v in json.loads(args["model_config"]).get("parameters", {}).items()}
        for folder in params.get("sys_path", "").split(os.pathsep):
            if folder:
                site.addsitedir(folder)
        from rn50.serving.backend import ServedArtifact, ServedModel, watch_owner

        if params.get("owner_pid"):
            watch_owner(int(params["owner_pid"]))  # this stub ends when rn50 serve does, even on kill -9
        self.model = ServedModel.open(ServedArtifact.from_parameters(params))

    def execute(self, requests: list[Any]) -> list[Any]:
        import triton_python_backend_utils as pb_utils

        from rn50.serving.backend import INPUT, OUTPUT, Refusal

        answers = self.model.answer([pb_utils.get_input_tensor_by_name(r, INPUT).as_numpy() for r in requests])
        error = pb_utils.TritonError
        return [
            pb_utils.InferenceResponse(error=error(a.message, error.INVALID_ARG if a.client_error else error.INTERNAL))
            if isinstance(a, Refusal)
            else pb_utils.InferenceResponse(output_tensors=[pb_utils.Tensor(OUTPUT, a)])
            for a in answers
        ]

    def finalize(self) -> None:
        self.model.close()

"""A model that takes as long as it is asked to, for the shutdown tests' real processes.

``sleep``: ``y = x``, after sleeping ``x[0]`` seconds in ``predict`` (600 stands for a hung
call). Each call appends a line to the file named by the backend option ``started`` as it
begins, so that a test knows the call is running in the runtime's worker thread.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from runtime.tensors import ModelMetadata, TensorSpec


class SleepBackend:
    format = "sleep"

    def __init__(self, options: Mapping[str, Any]) -> None:
        self.started = Path(options["started"])

    def load(self, path: Path) -> None:
        pass

    def metadata(self) -> ModelMetadata:
        return ModelMetadata(
            inputs=(TensorSpec("x", "FP32", (-1,)),),
            outputs=(TensorSpec("y", "FP32", (-1,)),),
            platform=self.format,
        )

    def predict(self, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        with self.started.open("a") as started:
            started.write("call\n")
        time.sleep(float(inputs["x"][0]))
        return {"y": inputs["x"].astype(np.float32)}

    def unload(self) -> None:
        pass

"""A tiny real backend for repository tests: its artefact is a text file of a number.

``load`` fails on purpose when the file says ``broken``, which is how the tests make a
version that cannot load without needing a real framework. With the backend option
``refuse_negative`` (config.yaml ``backend:``), ``predict`` fails on any negative input, as
a model fails on one bad row; ``calls`` records the rows of every call.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from runtime.tensors import ModelMetadata, TensorSpec


class ScaleBackend:
    format = "scale"

    def __init__(self, options: Mapping[str, Any]) -> None:
        self.options = options
        self.factor: float | None = None
        self.unloaded = 0
        self.calls: list[int] = []

    def load(self, path: Path) -> None:
        text = path.read_text().strip()
        if text == "broken":
            raise ValueError(f"{path.name} is not a number")
        self.factor = float(text)

    def metadata(self) -> ModelMetadata:
        return ModelMetadata(
            inputs=(TensorSpec("x", "FP32", (-1, 1)),),
            outputs=(TensorSpec("y", "FP32", (-1, 1)),),
            platform=self.format,
        )

    def predict(self, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        assert self.factor is not None
        self.calls.append(len(inputs["x"]))
        if self.options.get("refuse_negative") and (inputs["x"] < 0).any():
            raise ValueError("negative input")
        return {"y": (inputs["x"] * self.factor).astype(np.float32)}

    def unload(self) -> None:
        self.unloaded += 1

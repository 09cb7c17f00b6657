"""The one interface every model format implements.

A backend is cheap to construct; ``load`` does the expensive work (reading the artefact,
starting a JVM, building a session). Backends are synchronous: the HTTP app calls
``predict`` from a worker thread pool, so a backend never touches the event loop.

``predict`` receives inputs already validated against ``metadata()`` (names, dtypes,
shapes: see ``runtime.validation``) and returns every output by name. Requested-output
filtering is the caller's job.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np

from runtime.tensors import ModelMetadata


@runtime_checkable
class ModelBackend(Protocol):
    """A loaded model of one format."""

    #: Short format name, also the ``platform`` reported in metadata (``onnx``, ``pmml``...).
    format: str

    def load(self, path: Path) -> None:
        """Load the artefact at ``path`` (a file or a folder, as the format needs)."""

    def metadata(self) -> ModelMetadata:
        """Inputs and outputs as read from the artefact. Only valid after ``load``."""
        ...

    def predict(self, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Run the model on a batch (dimension 0) and return every output."""
        ...

    def unload(self) -> None:
        """Release what ``load`` acquired. Safe to call twice."""


#: Options from a model's ``config.yaml`` passed to the backend constructor
#: (for example ``signature`` for SavedModel). ``create_backend`` refuses keys that the
#: format does not take (``runtime.backends.BACKEND_OPTIONS``).
BackendOptions = Mapping[str, Any]

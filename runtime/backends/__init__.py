"""Model backends, one module per format, loaded lazily.

``FORMATS`` maps a format name to the class that serves it, as an import path, so that
``import runtime`` never imports TensorFlow, onnxruntime or a JVM bridge: a backend module
imports its framework inside ``load``. ``detect_format`` recognises a version folder's
artefact; a model's ``config.yaml`` may override it with ``format:``.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from runtime.backends.base import ModelBackend

FORMATS: dict[str, str] = {
    "onnx": "runtime.backends.onnx:OnnxBackend",
    "savedmodel": "runtime.backends.savedmodel:SavedModelBackend",
    "keras": "runtime.backends.keras_h5:KerasBackend",
    "pmml": "runtime.backends.pmml:PmmlBackend",
    "pipeline": "runtime.pipeline:PipelineBackend",
}

_SUFFIXES = {".onnx": "onnx", ".h5": "keras", ".hdf5": "keras", ".keras": "keras", ".pmml": "pmml"}


def detect_format(version_dir: Path) -> tuple[str, Path]:
    """Find the artefact in a version folder and name its format.

    Raises ``ValueError`` naming what was looked for when nothing (or more than one
    candidate) is found.
    """
    pipeline = version_dir / "pipeline.yaml"
    if pipeline.is_file():
        return "pipeline", pipeline
    if (version_dir / "saved_model.pb").is_file():
        return "savedmodel", version_dir
    candidates: list[tuple[str, Path]] = []
    for entry in sorted(version_dir.iterdir()):
        if entry.is_dir() and (entry / "saved_model.pb").is_file():
            candidates.append(("savedmodel", entry))
        elif entry.is_file() and entry.suffix.lower() in _SUFFIXES:
            candidates.append((_SUFFIXES[entry.suffix.lower()], entry))
    if len(candidates) == 1:
        return candidates[0]
    if not candidates:
        raise ValueError(
            f"no model artefact in {version_dir}: expected pipeline.yaml, saved_model.pb, "
            "or one file ending in .onnx, .h5, .hdf5, .keras or .pmml"
        )
    names = ", ".join(path.name for _, path in candidates)
    raise ValueError(f"more than one model artefact in {version_dir} ({names}); keep one")


def artefact_for_format(version_dir: Path, fmt: str) -> Path:
    """The artefact of a format named explicitly by config.yaml."""
    if fmt not in FORMATS:
        raise ValueError(f"unknown format '{fmt}' (expected one of {', '.join(FORMATS)})")
    if fmt == "pipeline":
        return version_dir / "pipeline.yaml"
    if fmt == "savedmodel":
        return version_dir
    files = [p for p in sorted(version_dir.iterdir()) if p.is_file()]
    if len(files) != 1:
        raise ValueError(
            f"format '{fmt}' set in config.yaml but {version_dir} holds {len(files)} files"
        )
    return files[0]


def create_backend(fmt: str, options: Mapping[str, Any] | None = None) -> ModelBackend:
    """Construct (not load) the backend for ``fmt``."""
    try:
        target = FORMATS[fmt]
    except KeyError:
        raise ValueError(f"unknown format '{fmt}' (expected one of {', '.join(FORMATS)})") from None
    module_name, class_name = target.split(":")
    backend_class = getattr(importlib.import_module(module_name), class_name)
    backend: ModelBackend = backend_class(dict(options or {}))
    return backend

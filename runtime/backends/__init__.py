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

#: The options each format's backend takes: config.yaml's ``backend:`` mapping (plus its
#: ``signature:`` key), or a pipeline model step's ``options:``. Any other key is a mistake
#: (``intra_op_thread: 4`` would otherwise be ignored without a word).
BACKEND_OPTIONS: dict[str, frozenset[str]] = {
    "onnx": frozenset({"intra_op_threads", "inter_op_threads"}),
    "savedmodel": frozenset({"signature"}),  # config.yaml's own `signature:` key, too
    "keras": frozenset(),
    "pmml": frozenset(),
    "pipeline": frozenset(),
}

_SUFFIXES = {".onnx": "onnx", ".h5": "keras", ".hdf5": "keras", ".keras": "keras", ".pmml": "pmml"}


def detect_format(version_dir: Path) -> tuple[str, Path]:
    """Find the artefact in a version folder and name its format (hidden files and folders
    do not count, as with ``format:``).

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
        if entry.name.startswith("."):  # macOS's `._model.onnx` beside model.onnx, say
            continue
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
    """The artefact of a format named explicitly by config.yaml.

    Hidden files (``.DS_Store``) are not candidates; of several files, the one named with
    the format's suffix is (a README beside ``model.onnx``). A SavedModel may sit in one
    sub-folder, as ``detect_format`` finds it too.
    """
    if fmt not in FORMATS:
        raise ValueError(f"unknown format '{fmt}' (expected one of {', '.join(FORMATS)})")
    if fmt == "pipeline":
        return version_dir / "pipeline.yaml"
    if fmt == "savedmodel":
        nested = [p for p in sorted(version_dir.iterdir()) if (p / "saved_model.pb").is_file()]
        if not (version_dir / "saved_model.pb").is_file() and len(nested) == 1:
            return nested[0]
        return version_dir
    files = [p for p in sorted(version_dir.iterdir()) if p.is_file() and p.name[:1] != "."]
    own = [p for p in files if _SUFFIXES.get(p.suffix.lower()) == fmt]
    if len(files) > 1 and len(own) == 1:
        return own[0]
    if len(files) != 1:
        names = ", ".join(p.name for p in files) or "none"
        raise ValueError(
            f"format '{fmt}' set in config.yaml but {version_dir} holds {len(files)} files "
            f"({names}); keep only the model file"
        )
    return files[0]


def create_backend(fmt: str, options: Mapping[str, Any] | None = None) -> ModelBackend:
    """Construct (not load) the backend for ``fmt``."""
    try:
        target = FORMATS[fmt]
    except KeyError:
        raise ValueError(f"unknown format '{fmt}' (expected one of {', '.join(FORMATS)})") from None
    check_backend_options(fmt, options or {})
    module_name, class_name = target.split(":")
    backend_class = getattr(importlib.import_module(module_name), class_name)
    backend: ModelBackend = backend_class(dict(options or {}))
    return backend


def check_backend_options(fmt: str, options: Mapping[str, Any]) -> None:
    """``ValueError`` naming the options ``fmt``'s backend does not take, and those it does."""
    known = BACKEND_OPTIONS.get(fmt)
    if known is None:  # a format registered from elsewhere checks its own options
        return
    unknown = sorted(str(key) for key in options if key not in known)
    if unknown:
        takes = ", ".join(sorted(known)) or "none"
        signature = (
            f" (`signature` names a SavedModel's signature, set by config.yaml's `signature:` "
            f"or a step's `options:`; a {fmt} model has none)"
            if "signature" in unknown
            else ""
        )
        raise ValueError(
            f"unknown backend option(s) {unknown} for format '{fmt}' (config.yaml `backend:`, "
            f"or a pipeline model step's `options:`); {fmt} takes: {takes}{signature}"
        )

"""One version of one model as the repository holds it, and how it is loaded.

``ModelVersion`` is a version's record: its state (``LOADING``, ``READY``, ``UNAVAILABLE``),
its backend and metadata, the requests holding it and whether it was retired.
``ModelEntry`` is a model's versions and the ones its policy wants. ``load_version`` loads
one version in place: it picks the backend (the config.yaml's ``format:``, or the one the
artefact's files say), loads it, checks the ``image:`` section against its inputs, and
records the outcome on the version, in the log and in the metrics. A broken artefact leaves
the version ``UNAVAILABLE`` with the reason, which names the file and, where its content
tells, what it really is (``runtime.backends.diagnosis``); it never raises.

``runtime.repository`` decides which versions to load and unload, and when (scanning the
folder, holding versions for requests); this module knows nothing of locks or of the disk
layout.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path

from monitoring.metrics import RuntimeMetrics
from runtime.backends import artefact_for_format, create_backend, detect_format
from runtime.backends.base import ModelBackend
from runtime.backends.diagnosis import OptionLoadError, load_failure
from runtime.batching import Batcher
from runtime.batching_config import BatchingConfig
from runtime.config import ModelConfig, option_setting
from runtime.images import ImageConfig
from runtime.tensors import ModelMetadata

# The repository's logger: a version's load is one of the repository's events.
log = logging.getLogger("driftgate.runtime.repository")

#: Output datatypes that can hold NaN and infinities (``driftgate_nonfinite_output_values_total``).
_FLOATING = frozenset({"FP16", "BF16", "FP32", "FP64"})


class ArtefactLoadError(Exception):
    """A backend's ``load`` failed; the message names the file (``load_failure``)."""


class VersionState(StrEnum):
    LOADING = "LOADING"
    READY = "READY"
    FAILED = "UNAVAILABLE"  # Triton's repository-index word for "could not load"


@dataclass
class ModelVersion:
    """One version of one model as the repository holds it."""

    model: str
    version: int
    path: Path
    state: VersionState = VersionState.LOADING
    format: str | None = None
    error: str | None = None
    backend: ModelBackend | None = None
    metadata: ModelMetadata | None = None
    fingerprint: float = 0.0
    loaded_at: float | None = None
    #: Requests holding this version (``ModelRepository.acquire``) and whether it has been
    #: replaced or removed: its backend is unloaded once both say it is no longer needed.
    users: int = 0
    retired: bool = False
    #: The model's ``batching:`` (config.yaml, re-read every scan), and the predictor's queue
    #: for this version while it is on (``runtime.batching``).
    batching: BatchingConfig | None = None
    batcher: Batcher | None = None
    #: The ``image:`` section this version takes PNG/JPEG bodies with: the config.yaml's,
    #: once it was checked against this version's inputs.
    image: ImageConfig | None = None

    @property
    def ready(self) -> bool:
        return self.state is VersionState.READY


@dataclass
class ModelEntry:
    name: str
    config: ModelConfig = field(default_factory=ModelConfig)
    config_error: str | None = None
    versions: dict[int, ModelVersion] = field(default_factory=dict)
    wanted: list[int] = field(default_factory=list)
    #: Why version folders named with leading zeros (``007/``) do not load, by the number
    #: each reads as (``runtime.not_serving.padded_folder_notes``); replaced whole by scans.
    misnamed: dict[int, str] = field(default_factory=dict)

    def default_version(self) -> ModelVersion | None:
        """Highest ready wanted version; else the highest ready one still loaded."""
        for pool in (self.wanted, sorted(self.versions)):
            for number in reversed(pool):
                candidate = self.versions.get(number)
                if candidate is not None and candidate.ready:
                    return candidate
        return None


def load_version(
    config: ModelConfig, candidate: ModelVersion, metrics: RuntimeMetrics | None
) -> None:
    """Load ``candidate``'s artefact with ``config``: READY with its backend, or FAILED with
    the reason; either way logged and counted in ``metrics``."""
    started = time.perf_counter()
    try:
        fmt = candidate.format = config.format  # known even when its artefact is not found
        if fmt:
            artefact = artefact_for_format(candidate.path, fmt)
        else:
            fmt, artefact = detect_format(candidate.path)
            candidate.format = fmt
        candidate.batching = config.batching
        backend = create_backend(fmt, config.backend_options())
        try:
            backend.load(artefact)
        except Exception as exc:  # the file, what it holds, then the framework's words
            message = load_failure(fmt, artefact, exc)
            if isinstance(exc, OptionLoadError):
                message = f"{message}; {option_setting(exc.option)}"
            raise ArtefactLoadError(message) from exc
        candidate.metadata = backend.metadata()
        if config.image is not None:  # the image section must fit the model's inputs
            config.image.input_spec(candidate.metadata)
        candidate.image = config.image
        candidate.backend = backend
    except Exception as exc:  # a broken artefact must never take the process down
        error = str(exc) if isinstance(exc, ArtefactLoadError) else f"{type(exc).__name__}: {exc}"
        candidate.state, candidate.error = VersionState.FAILED, error
        log.error(
            "model %s version %s failed to load: %s",
            candidate.model,
            candidate.version,
            candidate.error,
        )
        _count_load(metrics, candidate, "failure", started)
        return
    candidate.state, candidate.error = VersionState.READY, None
    candidate.loaded_at = time.time()
    log.info(
        "model %s version %s loaded (%s) in %.2fs",
        candidate.model,
        candidate.version,
        candidate.format,
        time.perf_counter() - started,
    )
    _count_load(metrics, candidate, "success", started)
    _start_nonfinite_counters(metrics, candidate)


def _start_nonfinite_counters(metrics: RuntimeMetrics | None, loaded: ModelVersion) -> None:
    """Each floating output's ``driftgate_nonfinite_output_values_total`` at 0 from the
    load on: a series first exported at its first NaN has no earlier sample, so ``increase``
    and ``rate`` (the alert, the panel) would miss that first burst."""
    if metrics is None or loaded.metadata is None:
        return
    for output in loaded.metadata.outputs:
        if output.datatype in _FLOATING:
            metrics.nonfinite_outputs.labels(loaded.model, str(loaded.version), output.name)


def _count_load(
    metrics: RuntimeMetrics | None, candidate: ModelVersion, outcome: str, started: float
) -> None:
    if metrics is None:
        return
    fmt = candidate.format or "unknown"
    metrics.model_loads.labels(candidate.model, fmt, outcome).inc()
    metrics.model_load_duration.labels(candidate.model, fmt).observe(time.perf_counter() - started)

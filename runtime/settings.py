"""Runtime settings: one documented object, built from CLI flags and ``DRIFTGATE_*`` variables."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name)
    return int(value) if value else default


def _env_float(name: str, default: float) -> float:
    value = os.environ.get(name)
    return float(value) if value else default


@dataclass(frozen=True)
class RuntimeSettings:
    #: Model repository root: ``<root>/<model>/<version>/<artefact>``.
    repository: Path
    host: str = "127.0.0.1"
    port: int = 8001
    #: Largest accepted request body; larger ones answer 413.
    max_body_bytes: int = field(
        default_factory=lambda: _env_int("DRIFTGATE_MAX_BODY_BYTES", 16 * 1024 * 1024)
    )
    #: Largest decoded image (width x height) accepted by the eval image upload.
    max_image_pixels: int = field(
        default_factory=lambda: _env_int("DRIFTGATE_MAX_IMAGE_PIXELS", 40_000_000)
    )
    #: Worker threads that run (synchronous) backends.
    inference_threads: int = field(
        default_factory=lambda: _env_int("DRIFTGATE_INFERENCE_THREADS", 4)
    )
    #: Model calls known to take at most this long run on the event loop, not in a worker
    #: thread (``runtime.placement``); 0 runs every call in the thread pool.
    inline_inference_max_s: float = field(
        default_factory=lambda: _env_float("DRIFTGATE_INLINE_INFERENCE_MAX_MS", 1.0) / 1000
    )
    #: Seconds between repository scans for new/removed versions (0: never re-scan).
    poll_interval_s: float = field(
        default_factory=lambda: _env_float("DRIFTGATE_POLL_INTERVAL_S", 2.0)
    )
    service_name: str = "driftgate-runtime"

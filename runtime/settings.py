"""Runtime settings: one documented object, built from CLI flags and ``DRIFTGATE_*`` variables.

A variable that is set but unusable (``DRIFTGATE_INFERENCE_THREADS=abc``, ``=0``,
``DRIFTGATE_MAX_BODY_BYTES=16MB``, a NaN interval) is refused with a
``RuntimeSettingsError`` naming it, never read as some other value.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path

from monitoring.slow_clients import DEFAULT_CLIENT_TIMEOUT_S
from runtime.draining import DEFAULT_SHUTDOWN_TIMEOUT_S
from runtime.explain_slots import DEFAULT_MAX_WAITING_EXPLANATIONS
from runtime.waiting import DEFAULT_MAX_WAITING_CALLS


class RuntimeSettingsError(ValueError):
    """A runtime setting (flag or ``DRIFTGATE_*`` variable) cannot be used; says which."""


def _env_number(name: str, default: float, kind: type[int] | type[float], minimum: float) -> float:
    """``os.environ[name]`` as a finite ``kind`` >= ``minimum``, or ``default`` when unset."""
    text = os.environ.get(name, "").strip()
    if not text:
        return default
    what = f"{'a whole number' if kind is int else 'a number'} >= {minimum:g}"
    try:
        value = kind(text)
    except ValueError:
        raise RuntimeSettingsError(f"{name}: expected {what}, got {text!r}") from None
    if not math.isfinite(value) or value < minimum:
        raise RuntimeSettingsError(f"{name}: expected {what}, got {text!r}")
    return value


def _env_int(name: str, default: int) -> int:
    return int(_env_number(name, default, int, 1))


def _env_float(name: str, default: float) -> float:
    return float(_env_number(name, default, float, 0))


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
    #: Calls of one model version that may wait for a worker thread; more answer 503
    #: (``runtime.waiting``).
    max_waiting_calls: int = field(
        default_factory=lambda: _env_int("DRIFTGATE_MAX_WAITING_CALLS", DEFAULT_MAX_WAITING_CALLS)
    )
    #: Explanations of one model version that may wait for one of the explanation slots
    #: (half the inference threads); more answer 503 (``runtime.explain_slots``).
    max_waiting_explanations: int = field(
        default_factory=lambda: _env_int(
            "DRIFTGATE_MAX_WAITING_EXPLANATIONS", DEFAULT_MAX_WAITING_EXPLANATIONS
        )
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
    #: A client must send a whole request within this long of connecting or of starting
    #: it (``monitoring.slow_clients``); slower ones get 408 and are disconnected.
    client_timeout_s: float = field(
        default_factory=lambda: _env_float("DRIFTGATE_CLIENT_TIMEOUT_S", DEFAULT_CLIENT_TIMEOUT_S)
    )
    #: On SIGTERM, requests in flight get this long to finish; those still running then are
    #: cut off, so that the runtime stops within its orchestrator's grace period
    #: (``runtime.draining``).
    shutdown_timeout_s: int = field(
        default_factory=lambda: int(
            _env_number("DRIFTGATE_SHUTDOWN_TIMEOUT_S", DEFAULT_SHUTDOWN_TIMEOUT_S, int, 0)
        )
    )
    service_name: str = "driftgate-runtime"

    def __post_init__(self) -> None:
        if not 1 <= self.port <= 65535:
            raise RuntimeSettingsError(f"port: expected a TCP port 1-65535, got {self.port}")
        for name in (
            "max_body_bytes",
            "max_image_pixels",
            "inference_threads",
            "max_waiting_calls",
            "max_waiting_explanations",
        ):
            if getattr(self, name) < 1:
                raise RuntimeSettingsError(
                    f"{name}: expected at least 1, got {getattr(self, name)}"
                )
        timeout = self.client_timeout_s
        if not (math.isfinite(timeout) and timeout > 0):
            raise RuntimeSettingsError(
                "DRIFTGATE_CLIENT_TIMEOUT_S: expected a positive number of seconds, "
                f"got {timeout!r}"
            )
        if self.shutdown_timeout_s < 0:
            raise RuntimeSettingsError(
                f"shutdown_timeout_s: expected a whole number >= 0, got {self.shutdown_timeout_s}"
            )
        for name in ("inline_inference_max_s", "poll_interval_s"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value >= 0):
                raise RuntimeSettingsError(f"{name}: expected a finite number >= 0, got {value!r}")

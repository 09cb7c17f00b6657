"""``batching:`` of a model's config.yaml: the settings of its dynamic batching, checked.

Configured per model in ``config.yaml`` (off when absent)::

    batching:
      max_batch_size: 32        # rows (dimension 0) per merged call
      max_queue_delay_ms: 0     # how long a request waits for company when the model is idle
      max_queue_size: 256       # requests waiting at most; more are refused (503)

``runtime.config`` reads the file and names it in errors; ``runtime.batching`` runs the
queue these settings describe. Nothing here runs a call or needs an event loop.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

_KEYS = {"max_batch_size", "max_queue_delay_ms", "max_queue_size"}
MAX_QUEUE_DELAY_MS = 1000.0
DEFAULT_MAX_QUEUE_SIZE = 256


@dataclass(frozen=True)
class BatchingConfig:
    max_batch_size: int
    max_queue_delay_s: float
    max_queue_size: int = DEFAULT_MAX_QUEUE_SIZE

    @classmethod
    def parse(cls, raw: Mapping[str, Any] | None) -> BatchingConfig | None:
        """``batching:`` of a model's config.yaml; ``None`` (off) when absent or empty.

        Raises ``ValueError`` naming the key (``runtime.config`` adds the file)."""
        if not raw:
            return None
        unknown = set(raw) - _KEYS
        if unknown:
            raise ValueError(
                f"batching: unknown key(s) {sorted(unknown)}; expected some of {sorted(_KEYS)}"
            )
        size = raw.get("max_batch_size")
        if isinstance(size, bool) or not isinstance(size, int) or size < 1:
            raise ValueError(
                f"batching.max_batch_size must be a whole number of rows >= 1, got {size!r}"
            )
        delay = raw.get("max_queue_delay_ms", 0.0)
        if (
            isinstance(delay, bool)
            or not isinstance(delay, int | float)
            or not 0 <= delay <= MAX_QUEUE_DELAY_MS
        ):
            raise ValueError(
                f"batching.max_queue_delay_ms must be a number of milliseconds "
                f"from 0 to {MAX_QUEUE_DELAY_MS:g}, got {delay!r}"
            )
        queue = raw.get("max_queue_size", DEFAULT_MAX_QUEUE_SIZE)
        if isinstance(queue, bool) or not isinstance(queue, int) or queue < 1:
            raise ValueError(
                f"batching.max_queue_size must be a whole number of requests >= 1, got {queue!r}"
            )
        return cls(size, float(delay) / 1000.0, queue)

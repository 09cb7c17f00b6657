"""Expected refusals in the runtime's log: a WARNING at most once a minute, with a count.

A ``ServiceOverloaded`` refusal (503: too many calls or explanations wait for a thread, or
a batch queue is full) is the runtime shedding load as designed, and each one is counted
already (``driftgate_runtime_overload_rejections_total``, ``driftgate_batch_rejections_total``).
Logged one line each, at ERROR, an overload would flood the log with thousands of lines
a second. So the first refusal is logged when it happens, and the next ones at most every
``REFUSAL_LOG_INTERVAL_S``, with how many there were since the previous line, as the
prediction log logs its drops (``monitoring.prediction_log.writer``). The same goes for
``ModelNotReady`` (503 while a version loads, or after it failed to: its load failure is
logged when it happens), with a log of its own.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

#: Refusals are logged at most this often (they are answers on the request path).
REFUSAL_LOG_INTERVAL_S = 60.0


class RefusalLog:
    """Logs overload refusals at most once every ``interval_s`` (see the module docstring)."""

    def __init__(
        self,
        log: logging.Logger,
        interval_s: float = REFUSAL_LOG_INTERVAL_S,
        clock: Callable[[], float] = time.monotonic,
        *,
        why: str = "as overloaded",
        counted_in: str = (
            "driftgate_runtime_overload_rejections_total, driftgate_batch_rejections_total"
        ),
    ) -> None:
        """``why``: the refusals' reason, as the line says it; ``counted_in``: the metrics
        that count them all."""
        self._log = log
        self._why = why
        self._counted_in = counted_in
        self._interval_s = interval_s
        self._clock = clock
        self._lock = threading.Lock()
        self._unlogged = 0
        self._next = 0.0  # when the next refusal may be logged

    def refused(self, message: str) -> None:
        """One refusal, whose error said ``message``; logged unless one was lately."""
        now = self._clock()
        with self._lock:
            self._unlogged += 1
            if now < self._next:
                return
            count, self._unlogged = self._unlogged, 0
            self._next = now + self._interval_s
        self._log.warning(
            "refused %d request(s) with 503 %s, the latest: %s; refusals in the next %g s "
            "are counted (%s), not logged",
            count,
            self._why,
            message,
            self._interval_s,
            self._counted_in,
        )

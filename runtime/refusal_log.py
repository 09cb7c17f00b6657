"""Overload refusals in the runtime's log: a WARNING at most once a minute, with a count.

A ``ServiceOverloaded`` refusal (503: too many calls or explanations wait for a thread, or
a batch queue is full) is the runtime shedding load as designed, and each one is counted
already (``driftgate_runtime_overload_rejections_total``, ``driftgate_batch_rejections_total``).
Logged one line each, at ERROR, an overload would flood the log with thousands of lines
a second. So the first refusal is logged when it happens, and the next ones at most every
``REFUSAL_LOG_INTERVAL_S``, with how many there were since the previous line, as the
prediction log logs its drops (``monitoring.prediction_log.writer``).
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
    ) -> None:
        self._log = log
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
            "refused %d request(s) with 503 as overloaded, the latest: %s; refusals in the "
            "next %g s are counted (driftgate_runtime_overload_rejections_total, "
            "driftgate_batch_rejections_total), not logged",
            count,
            message,
            self._interval_s,
        )

"""How long the prediction-log writer could not write, told once writing works again.

While a store refuses writes, the log says so in full once and then once a minute
(``repeated_errors``), each line about one segment: after an outage it read "dropped 20
predictions records after 3 failed attempts" where 800 records were lost, and nothing
said when it ended. The writer tells ``WriteOutage`` how each flush went; the first flush
that writes records again with none lost to a failed write, ``SETTLE_S`` after the last
one that lost some, ends the outage, and ``recovered`` gives the one line that sums it
up: how long, how many flushes failed, how many records they dropped (those counted
``write_failed`` or ``flush_failed``). Without the wait, a store where one partition
refuses writes and the others take them (a day folder another user created) ended and
began an outage every other flush, a line each time. A writer closed during an outage
says the same (``ongoing``).
"""

from __future__ import annotations

import threading

#: Seconds without a failed write before a flush that writes ends the outage.
SETTLE_S = 30.0


class WriteOutage:
    """Flushes whose writes failed since writing last worked."""

    def __init__(self, settle_s: float = SETTLE_S) -> None:
        self.settle_s = settle_s
        self._lock = threading.Lock()
        self._since: float | None = None  # when the first failed flush began
        self._flushes = 0
        self._dropped = 0
        self._last_failure = 0.0

    def failed(self, started: float, dropped: int) -> None:
        """A flush that began at ``started`` (monotonic) lost ``dropped`` records to failed
        writes."""
        with self._lock:
            if self._since is None:
                self._since = started
            self._flushes += 1
            self._dropped += dropped
            self._last_failure = started

    def recovered(self, started: float) -> str | None:
        """A flush that began at ``started`` wrote records and lost none to a failed write:
        the line that ends the outage, or None when there was none."""
        with self._lock:
            if self._since is None or started - self._last_failure < self.settle_s:
                return None
            since, flushes, dropped = self._since, self._flushes, self._dropped
            self._since, self._flushes, self._dropped = None, 0, 0
        return (
            f"prediction log: writing works again after {max(started - since, 0):.1f} s of "
            f"failures (failed flushes: {flushes}, records dropped: {dropped}, reason "
            "write_failed or flush_failed)"
        )

    def failing_for(self, now: float) -> float | None:
        """Seconds writes have been failing, while the last failure is less than
        ``settle_s`` old; None otherwise."""
        with self._lock:
            if self._since is None or now - self._last_failure >= self.settle_s:
                return None
            return max(now - self._since, 0.0)

    def ongoing(self, now: float) -> str | None:
        """The line for a writer that stops during an outage; None when there is none."""
        with self._lock:
            if self._since is None:
                return None
            return (
                f"prediction log: stopping while writes fail, for {max(now - self._since, 0):.1f}"
                f" s (failed flushes: {self._flushes}, records dropped: {self._dropped}, "
                "reason write_failed or flush_failed)"
            )

"""How long the prediction-log writer could not write, told once writing works again.

While a store refuses writes, the log says so in full once and then once a minute
(``repeated_errors``), each line about one segment: after an outage it read "dropped 20
predictions records after 3 failed attempts" where 800 records were lost, and nothing
said when it ended. The writer tells ``WriteOutage`` how each flush went; the first flush
that writes records again with none lost to a failed write ends the outage, and
``recovered`` gives the one line that sums it up: how long, how many flushes failed, how
many records they dropped (those counted ``write_failed`` or ``flush_failed``).
"""

from __future__ import annotations

import threading


class WriteOutage:
    """Flushes whose writes failed since writing last worked."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._since: float | None = None  # when the first failed flush began
        self._flushes = 0
        self._dropped = 0

    def failed(self, started: float, dropped: int) -> None:
        """A flush that began at ``started`` (monotonic) lost ``dropped`` records to failed
        writes."""
        with self._lock:
            if self._since is None:
                self._since = started
            self._flushes += 1
            self._dropped += dropped

    def recovered(self, started: float) -> str | None:
        """A flush that began at ``started`` wrote records and lost none to a failed write:
        the line that ends the outage, or None when there was none."""
        with self._lock:
            if self._since is None:
                return None
            since, flushes, dropped = self._since, self._flushes, self._dropped
            self._since, self._flushes, self._dropped = None, 0, 0
        return (
            f"prediction log: writing works again after {max(started - since, 0):.1f} s of "
            f"failures (failed flushes: {flushes}, records dropped: {dropped}, reason "
            "write_failed or flush_failed)"
        )

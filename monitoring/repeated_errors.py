"""Errors that repeat, logged in full once and then summarised: ``RepeatedErrors``.

A store that went read-only fails every segment write, three attempts each, several times
a second: logged one traceback per attempt, that was about 48,000 lines in 10 minutes,
burying the one line on-call needed. Here an error (its kind and message, so a new error
is always logged in full) is logged with its traceback the first time; while it repeats,
at most one line per ``every_s`` says how many times it came back meanwhile. Nothing is
counted here: the metrics beside each log call count every occurrence.
"""

from __future__ import annotations

import logging
import sys
import threading
import time
from collections.abc import Callable, Hashable

#: Distinct errors remembered at once; the oldest is forgotten past this.
MAX_REMEMBERED = 64


class RepeatedErrors:
    """A log's repeating errors, each in full once, then one summary line per ``every_s``."""

    def __init__(
        self,
        logger: logging.Logger,
        every_s: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.logger = logger
        self.every_s = every_s
        self.clock = clock
        self._lock = threading.Lock()
        #: By error: when it was last logged, and how often it came back since.
        self._seen: dict[Hashable, list[float]] = {}

    def exception(self, message: str, *args: object) -> None:
        """``logger.exception(message, *args)`` for the exception being handled, unless the
        same one (kind and text) was logged less than ``every_s`` ago."""
        error = sys.exc_info()[1]
        self.error((type(error), str(error)), message, *args, exc_info=True)

    def error(self, key: Hashable, message: str, *args: object, exc_info: bool = False) -> None:
        """``logger.error(message, *args)``, unless an error of the same ``key`` was logged
        less than ``every_s`` ago; the next one logged says how many were left out."""
        now = self.clock()
        with self._lock:
            seen = self._seen.get(key)
            if seen is not None and now - seen[0] < self.every_s:
                seen[1] += 1
                return
            left_out = 0 if seen is None else int(seen[1])
            self._seen.pop(key, None)
            self._seen[key] = [now, 0]
            if len(self._seen) > MAX_REMEMBERED:
                del self._seen[next(iter(self._seen))]
        if left_out:
            message += f" (and {left_out} more like it in the last {self.every_s:g} s)"
            exc_info = False  # its traceback was logged the first time
        self.logger.error(message, *args, exc_info=exc_info)

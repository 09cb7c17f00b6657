"""Errors that repeat, logged in full once and then summarised: ``RepeatedErrors``.

A store that went read-only fails every segment write, three attempts each, several times
a second: logged one traceback per attempt, that was about 48,000 lines in 10 minutes,
burying the one line on-call needed. Here an error is logged with its traceback the first
time; while it repeats, at most one line per ``every_s`` says how many times it came back
meanwhile. Nothing is counted here: the metrics beside each log call count every
occurrence.

An error repeats when its ``error_key`` is the same: its kind and errno for an ``OSError``
that has one, else its kind and message with paths and hex ids left out. Not the message
as it is: a write into a read-only or unwritable store names the fresh staging file it
could not create, so every attempt looked like a new error and was logged in full.
A different errno or message is a new error, logged in full at once.
"""

from __future__ import annotations

import logging
import re
import sys
import threading
import time
from collections.abc import Callable, Hashable

#: Distinct errors remembered at once; the oldest is forgotten past this.
MAX_REMEMBERED = 64

#: What varies between repeats of one error: an absolute path (``/store/.staging/<uuid>.tmp``,
#: not the ``int64/double`` of a type error), or a bare hex id of 16 digits or more (a
#: uuid, a digest).
_VARYING = re.compile(r"(?<![\w.])(?:/[^\s'\"/:,;()\[\]]+)+/?|\b[0-9a-fA-F]{16,}\b")


def error_key(error: BaseException | None) -> Hashable:
    """What makes two errors the same error: kind and errno of an ``OSError`` (its message
    names the file, which differs each time), else kind and message without paths or ids."""
    if isinstance(error, OSError) and error.errno is not None:
        return (type(error), error.errno)
    return (type(error), _VARYING.sub("<>", str(error)))


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
        same one (``error_key``) was logged less than ``every_s`` ago."""
        self.error(error_key(sys.exc_info()[1]), message, *args, exc_info=True)

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

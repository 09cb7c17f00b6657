"""What a job run sees of the scheduler running it (``monitoring.job_runner.JobRunner``): the
time left before its limit, whether it was asked to stop, and the DuckDB connections it
hands over to be interrupted.

The scheduler runs each run in a thread of its own, under a ``RunLimit`` bound to the
run's context; the functions here read it, and do nothing (or answer "no limit") outside
a scheduled run, so a job's code runs the same when called directly.

A run is asked to stop when it passes its time limit and when the scheduler stops (the
jobs process got SIGTERM, the gateway shuts down). Stopping is cooperative: a job calls
``check_stop`` between units of work (a model version, a partition), which raises
``RunStopped``, so that what is done stays done and what is not is left whole for the
next run; meanwhile the scheduler interrupts the queries of the connections the run
registered (``watch_connection``), and HTTP calls see no time left (``run_time_left``).
"""

from __future__ import annotations

import contextlib
import contextvars
import threading
import time
from typing import Protocol


class RunStopped(BaseException):
    """The run in progress was asked to stop. A BaseException, like ``KeyboardInterrupt``:
    the ``except Exception`` that keeps one model version's failure from stopping the
    others must not swallow it."""


class Interruptible(Protocol):
    """What a run's stop interrupts: a DuckDB connection."""

    def interrupt(self) -> object: ...


class RunLimit:
    """The time limit of one run, its stop signal, and the connections it interrupts."""

    def __init__(self, seconds: float) -> None:
        self.deadline = time.monotonic() + seconds
        #: Set when the run should stop: past its limit, or the scheduler stopping.
        self.stopping = threading.Event()
        self.timed_out = False  # it passed its time limit
        self.cancelled = False  # the scheduler stopped it
        #: Set when the run returned.
        self.ended = threading.Event()
        #: Wakes the thread waiting on the run: it returned, or the scheduler stops.
        self.wake = threading.Event()
        self._lock = threading.Lock()
        self._connections: list[Interruptible] = []

    def remaining(self) -> float:
        return self.deadline - time.monotonic()

    def cancel(self) -> None:
        """Ask the run to stop because the scheduler stops (from another thread)."""
        self.cancelled = True
        self.stopping.set()
        self.wake.set()

    def finish(self) -> None:
        """The run returned (called by its own thread, last)."""
        self.ended.set()
        self.wake.set()

    def watch(self, con: Interruptible) -> None:
        with self._lock:
            if not any(known is con for known in self._connections):
                self._connections.append(con)

    def interrupt(self) -> None:
        """Stop every query the run's connections are running (from another thread)."""
        with self._lock:
            connections = list(self._connections)
        for con in connections:
            with contextlib.suppress(Exception):  # closed already: nothing to stop
                con.interrupt()


_CURRENT_RUN: contextvars.ContextVar[RunLimit | None] = contextvars.ContextVar(
    "driftgate_job_run", default=None
)


def bind_run(limit: RunLimit) -> None:
    """Make ``limit`` the current run's, in the run's own thread (the scheduler's part)."""
    _CURRENT_RUN.set(limit)


def watch_connection(con: Interruptible) -> None:
    """Have the job run in progress interrupt ``con``'s queries once past its time limit
    or stopped; nothing outside a scheduled run. Call it for every DuckDB connection a job
    opens."""
    limit = _CURRENT_RUN.get()
    if limit is not None:
        limit.watch(con)


def run_time_left() -> float | None:
    """Seconds left before the time limit of the job run in progress, 0 once it was asked
    to stop; None outside one."""
    limit = _CURRENT_RUN.get()
    if limit is None:
        return None
    return 0.0 if limit.stopping.is_set() else limit.remaining()


def stop_requested() -> bool:
    """Whether the job run in progress was asked to stop; False outside one."""
    limit = _CURRENT_RUN.get()
    return limit is not None and limit.stopping.is_set()


def check_stop() -> None:
    """Raise ``RunStopped`` when the job run in progress was asked to stop; nothing
    outside one. Call it between units of work."""
    if stop_requested():
        raise RunStopped("the job run was asked to stop")

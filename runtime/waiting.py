"""A bound on the model calls of one version that wait for an inference thread.

A model without ``batching:`` hands each call to the inference threads
(``runtime.predictor``); their executor's queue has no end, so under overload latency and
memory would grow without limit. ``WaitingCalls`` counts the calls of one loaded version
that were handed over and that no thread has started yet, and refuses one more beyond
``DRIFTGATE_MAX_WAITING_CALLS`` at once with ``ServiceOverloaded`` (503, ``Retry-After:
1``), as a full batch queue does (``runtime.batching``). The gateway retries such a 503 on
another replica.

The bound is per version, not per runtime: a runtime-wide one would refuse every model
once one slow model's backlog filled it. Calls that run inline on the event loop never
wait for a thread and never come here.

A call stops waiting when a thread starts it, or when its request goes (cancelled: the
client hung up) before one did. The count is changed from both the event loop and the
worker threads, hence the lock.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from concurrent.futures import Executor
from typing import TypeVar

from runtime.errors import ServiceOverloaded

T = TypeVar("T")

#: Calls of one version that may wait for a thread. At 64 concurrent connections (the
#: benchmarks) at most 64 wait, so the default never refuses there.
DEFAULT_MAX_WAITING_CALLS = 256


class WaitingCalls:
    """The calls of one model version waiting for an inference thread, at most ``limit``."""

    def __init__(self, limit: int, label: str, on_full: Callable[[], None]) -> None:
        self.limit = limit
        self._label = label  # "model 'm' version 1", for messages
        self._on_full = on_full  # a call was refused
        self._lock = threading.Lock()
        self._waiting = 0

    @property
    def waiting(self) -> int:
        return self._waiting

    async def run(self, executor: Executor, call: Callable[[], T]) -> T:
        """``call()`` in ``executor``; ``ServiceOverloaded`` if ``limit`` calls wait already."""
        with self._lock:
            full = self._waiting >= self.limit
            if not full:
                self._waiting += 1
        if full:
            self._on_full()
            raise ServiceOverloaded(
                f"{self._label} is overloaded: {self.limit} requests already wait for an "
                "inference thread (DRIFTGATE_MAX_WAITING_CALLS); retry shortly"
            )
        ticket = _Ticket(self)
        try:
            return await asyncio.get_running_loop().run_in_executor(executor, ticket.started, call)
        finally:
            self._leave(ticket)  # cancelled before a thread took it; else a no-op

    def _leave(self, ticket: _Ticket) -> None:
        with self._lock:
            if not ticket.left:
                ticket.left = True
                self._waiting -= 1


class _Ticket:
    """One call's place in the count, given back exactly once."""

    __slots__ = ("_calls", "left")

    def __init__(self, calls: WaitingCalls) -> None:
        self._calls = calls
        self.left = False

    def started(self, call: Callable[[], T]) -> T:
        """In the worker thread: no longer waiting, now running."""
        self._calls._leave(self)
        return call()

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

A call stops waiting when a thread starts it, or when its client goes before one did:
``client_gone`` returns (the server says the connection closed; handlers are never
cancelled for that) or its task is cancelled. Such a call never runs, and its request is
answered ``ClientClosedRequest`` (499). A call a thread has started runs to its end, and
its request waits for that end, even when its task is cancelled (the cancellation is
raised then): a request holds its model version until then, and a retired version's backend
is unloaded by its last holder (``runtime.repository``), so never under a running call.
Batch queues rely on this too: a cancelled request's call does not leave the queue idle
while its thread still runs (``runtime.batching``). The count is changed from both the
event loop and the worker threads, hence the lock.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Awaitable, Callable
from concurrent.futures import Executor, Future
from typing import Any, TypeVar

from runtime.errors import ClientClosedRequest, ServiceOverloaded

T = TypeVar("T")
#: Returns when the request's client has gone (its connection closed).
ClientGone = Callable[[], Awaitable[Any]]

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

    async def run(
        self, executor: Executor, call: Callable[[], T], client_gone: ClientGone | None = None
    ) -> T:
        """``call()`` in ``executor``; ``ServiceOverloaded`` if ``limit`` calls wait already,
        ``ClientClosedRequest`` if ``client_gone`` returns before a thread started it."""
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
            running = executor.submit(ticket.started, call)
        except BaseException:  # the executor is shut down (``Predictor.close``): not waiting
            self._leave(ticket)
            raise
        answer = asyncio.wrap_future(running)
        try:
            if client_gone is None:
                return await answer
            watcher = asyncio.ensure_future(client_gone())
            try:
                await asyncio.wait((answer, watcher), return_when=asyncio.FIRST_COMPLETED)
            finally:
                watcher.cancel()
            if answer.done() or not self._leave(ticket):
                return await answer  # a thread has it: it runs to its end
            raise ClientClosedRequest(
                "the client closed the connection while its request waited for an inference "
                f"thread of {self._label}"
            )
        except asyncio.CancelledError:
            if not self._leave(ticket):  # a thread has it: the request ends with the call
                await until_finished(running)
            raise
        finally:
            self._leave(ticket)  # gone or cancelled before a thread took it: it never runs
            answer.cancel()  # a no-op once answered

    def _leave(self, ticket: _Ticket) -> bool:
        """Take ``ticket`` out of the count; ``False`` if it was out already."""
        with self._lock:
            if ticket.left:
                return False
            ticket.left = True
            self._waiting -= 1
            return True


async def until_finished(running: Future[Any]) -> None:
    """Returns once ``running``, a call a thread has started, has ended, whatever its
    outcome (nobody reads it); cancelling the waiting task meanwhile does not end the wait
    (its caller raises the cancellation afterwards)."""
    ended = asyncio.wrap_future(running)
    while not ended.done():
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.wait((ended,))
    if not ended.cancelled():
        ended.exception()  # retrieved, so that asyncio does not log it as forgotten


class _Ticket:
    """One call's place in the count, given back exactly once."""

    __slots__ = ("_calls", "left")

    def __init__(self, calls: WaitingCalls) -> None:
        self._calls = calls
        self.left = False

    def started(self, call: Callable[[], T]) -> T:
        """In the worker thread: no longer waiting, now running; unless its request left
        first (the event loop took the ticket back), then it must not run."""
        if not self._calls._leave(self):
            raise ClientClosedRequest("the request left before a thread started its call")
        return call()

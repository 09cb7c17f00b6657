"""One backend call at a time per model version, across threads, taken in arrival order.

A version with ``batching:`` runs one merged call at a time (``runtime.batching``): its
queue, on the event loop, starts a call only when the previous one has ended. An
explanation (``runtime.routes.explain``) calls the same backend from an inference thread,
outside that queue, chunk after chunk (``runtime.explaining``). Both take the version's
``CallTurns`` around the backend call itself, so an explanation's call never runs beside a
merged call, nor beside another explanation's call of the version.

Why a turn at the call and not a place in the batch queue: an explanation already holds an
inference thread while it waits, and with ``DRIFTGATE_INFERENCE_THREADS=1`` the batch ahead
of it could never get a thread to run its call in (a deadlock). A turn is only ever held by
a call that needs no thread to start (running in its thread, or inline on the event loop),
so waiting for a turn never waits for a thread. A merged call placed in the thread pool
takes its turn in its thread, so it holds that thread while it waits (one explanation call
at most).

Turns are first come, first served (a ticket each), so a merged call waits for at most the
one explanation call in progress (a bounded chunk), never for a whole explanation, and an
explanation's next chunk waits for the merged call that arrived before it. A merged call
that runs inline on the event loop takes its turn at once when it is free (``try_acquire``),
else waits for it on the event loop (``acquire_on_loop``), holding no thread, and runs
inline once it has it. Waiting in a thread instead would hold a thread for a call that
needs none: with ``DRIFTGATE_INFERENCE_THREADS=1`` the explanation holds the only one, so
the prediction waited for the whole explanation, and with more threads it kept the other
versions' calls from one. A waiter on the loop that is cancelled (its client went) gives
its ticket up, or the turn on, if it came meanwhile: a turn is never left unreleased.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from types import TracebackType


class CallTurns:
    """A first-come-first-served lock: ``with turns:`` waits for the calls ahead."""

    def __init__(self) -> None:
        self._changed = threading.Condition(threading.Lock())
        self._next_ticket = 0  # the ticket the next caller takes
        self._serving = 0  # the ticket whose call may run
        self._wakers: dict[int, _Waker] = {}  # tickets waited for on an event loop
        self._given_up: set[int] = set()  # tickets whose waiter left before its turn

    def acquire(self) -> None:
        with self._changed:
            ticket = self._next_ticket
            self._next_ticket += 1
            while ticket != self._serving:
                self._changed.wait()

    def try_acquire(self) -> bool:
        """Take the turn only if nobody holds it or waits for it."""
        with self._changed:
            if self._next_ticket != self._serving:
                return False
            self._next_ticket += 1
            return True

    async def acquire_on_loop(self) -> None:
        """``acquire`` for a caller on the event loop: waits without blocking the loop.
        Cancelled while it waits, the ticket is given up (or the turn passed on)."""
        with self._changed:
            ticket = self._next_ticket
            self._next_ticket += 1
            if ticket == self._serving:
                return
            waker = self._wakers[ticket] = _Waker(self, ticket, asyncio.get_running_loop())
        try:
            await waker.served
        except BaseException:
            self._give_up(ticket)
            raise

    def release(self) -> None:
        with self._changed:
            self._serving += 1
            while self._given_up and self._serving in self._given_up:
                self._given_up.remove(self._serving)
                self._serving += 1
            waker = self._wakers.pop(self._serving, None) if self._wakers else None
            self._changed.notify_all()
        if waker is not None:
            waker.wake()

    def _give_up(self, ticket: int) -> None:
        """The waiter of ``ticket`` leaves: its turn, if it came already, goes to the next."""
        with self._changed:
            came = ticket == self._serving
            if not came:
                self._wakers.pop(ticket, None)
                self._given_up.add(ticket)
        if came:
            self.release()

    def __enter__(self) -> None:
        self.acquire()

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.release()


class _Waker:
    """Tells a waiter on an event loop, from any thread, that its turn has come."""

    def __init__(self, turns: CallTurns, ticket: int, loop: asyncio.AbstractEventLoop) -> None:
        self._turns, self._ticket, self._loop = turns, ticket, loop
        self.served: asyncio.Future[None] = loop.create_future()

    def wake(self) -> None:
        try:
            self._loop.call_soon_threadsafe(self._settle)
        except RuntimeError:  # the loop is closed: nobody will run the call, pass the turn on
            self._turns._give_up(self._ticket)

    def _settle(self) -> None:
        with contextlib.suppress(asyncio.InvalidStateError):  # cancelled meanwhile
            self.served.set_result(None)

"""One backend call at a time per model version, across threads, taken in arrival order.

A version with ``batching:`` runs one merged call at a time (``runtime.batching``): its
queue, on the event loop, starts a call only when the previous one has ended. An
explanation (``runtime.routes.explain``) calls the same backend from an inference thread,
outside that queue, chunk after chunk (``runtime.explaining``). Both take the version's
``CallTurns`` around the backend call itself, so an explanation's call never runs beside a
merged call, nor beside another explanation's call of the version.

Why a turn at the call and not a place in the batch queue: an explanation already holds an
inference thread while it waits, and with ``DRIFTGATE_INFERENCE_THREADS=1`` the batch ahead
of it could never get a thread to run its call in (a deadlock). A thread waiting for a turn
holds none: whoever has the turn is running its call already.

Turns are first come, first served (a ticket each), so a merged call waits for at most the
one explanation call in progress (a bounded chunk), never for a whole explanation, and an
explanation's next chunk waits for the merged call that arrived before it. A merged call
that runs inline on the event loop never waits: it takes a turn only when one is free at
once (``try_acquire``), else it goes to a thread to wait there.
"""

from __future__ import annotations

import threading
from types import TracebackType


class CallTurns:
    """A first-come-first-served lock: ``with turns:`` waits for the calls ahead."""

    def __init__(self) -> None:
        self._changed = threading.Condition(threading.Lock())
        self._next_ticket = 0  # the ticket the next caller takes
        self._serving = 0  # the ticket whose call may run

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

    def release(self) -> None:
        with self._changed:
            self._serving += 1
            self._changed.notify_all()

    def __enter__(self) -> None:
        self.acquire()

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.release()

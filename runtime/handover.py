"""What a model version's new batch queue waits for before its first call.

A version with ``batching:`` runs one call at a time (``runtime.batching``); without it,
its calls go to the inference threads as they come. ``batching:`` can change while the
runtime serves (config.yaml is re-read every scan), and the calls of the old way may still
run in a thread then. The version's new queue runs nothing until what it replaces has
drained (``Drains``): the queue before it (a ``Batcher``), the version's unbatched calls
(``CallsInFlight``), or both (``AllDrained``), so that a change never runs a batch beside
the old way's last calls.

Everything here lives on the runtime's event loop. A call counts until its coroutine
ends, which is never before its thread is done with it, cancelled or not
(``runtime.waiting``).
"""

from __future__ import annotations

import asyncio
from typing import Protocol


class Drains(Protocol):
    """Calls of one version that a new queue must let finish first."""

    def busy(self) -> bool:
        """Whether a call may still run (or wait to)."""

    async def until_idle(self) -> None:
        """Returns once none runs or waits."""


class CallsInFlight:
    """The calls of one version made outside any batch queue, counted while they run."""

    def __init__(self) -> None:
        self._running = 0
        self._idle_waiters: list[asyncio.Future[None]] = []

    @property
    def running(self) -> int:
        return self._running

    def started(self) -> None:
        """One more call runs; ``ended()`` must follow (the request path: no generator)."""
        self._running += 1

    def ended(self) -> None:
        self._running -= 1
        if not self._running:
            waiters, self._idle_waiters = self._idle_waiters, []
            for waiter in waiters:
                if not waiter.done():
                    waiter.set_result(None)

    def busy(self) -> bool:
        return self._running > 0

    async def until_idle(self) -> None:
        while self._running:
            waiter = asyncio.get_running_loop().create_future()
            self._idle_waiters.append(waiter)
            await waiter


class AllDrained:
    """Several ``Drains`` as one: busy while any of them is."""

    def __init__(self, *parts: Drains) -> None:
        self._parts = parts

    def busy(self) -> bool:
        return any(part.busy() for part in self._parts)

    async def until_idle(self) -> None:
        while self.busy():
            for part in self._parts:
                await part.until_idle()

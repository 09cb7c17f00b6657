"""How many explanations may run, and wait, in the inference threads.

An explanation (``runtime.routes.explain``) is one request that calls its model hundreds of
times: seconds of a worker thread where a prediction takes milliseconds. Handed to the
threads like a prediction, a burst of them would hold every thread and queue ahead of the
predictions of every version. So explanations are admitted apart, before the threads:

- **Running**: at most ``running`` explanations hold a worker thread at once, runtime-wide
  (half of ``DRIFTGATE_INFERENCE_THREADS``, at least one): the other threads are always
  left to predictions, whatever the explain load. With one inference thread an explanation
  may still hold it; predictions then wait behind at most that one.
- **Waiting**: an explanation that finds every slot taken waits on the event loop, not in
  the threads' queue, so it never sits ahead of a prediction. At most
  ``DRIFTGATE_MAX_WAITING_EXPLANATIONS`` (default 4) of one version wait; one more is
  refused at once with ``ServiceOverloaded`` (503, ``Retry-After: 1``), counted as
  ``reason="waiting_explanations"``. The bound is much smaller than the predictions' (256,
  ``runtime.waiting``): each waiting explanation costs seconds of the one before it, and a
  client is better answered by another replica. It is per version, as the predictions' is,
  so that one model's explain backlog does not refuse another's explanations.
- **Client hang-ups**: an explanation whose client closes the connection while it waits
  leaves at once and never runs; one that is running is told to stop (``stop``, checked
  before each model call, and no call is long: ``runtime.explaining.MAX_CALL_ROWS``) and
  gives its thread back after the model call in progress; its request ends then (holding
  its version loaded until the thread is done with it), answered ``ClientClosedRequest``
  (499, counted in the request metrics).

A slot is given back when the thread is done with the work, not when the request stops
waiting for it: a stopped explanation holds its slot until its model call returns.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Awaitable, Callable
from concurrent.futures import Executor, Future
from typing import Any, TypeVar

from runtime.errors import ClientClosedRequest, ServiceOverloaded
from runtime.waiting import ClientGone, until_finished

T = TypeVar("T")
#: Explanations of one version that may wait for a slot: a few explanation times at most.
DEFAULT_MAX_WAITING_EXPLANATIONS = 4


def running_explanations_for(threads: int) -> int:
    """Explanations that may run at once on ``threads`` inference threads: half, at least one."""
    return max(1, threads // 2)


class ExplainSlots:
    """Explanations running at most ``running`` at once, waiting at most ``max_waiting``
    per version (see the module docstring). Used from the event loop only."""

    def __init__(self, running: int, max_waiting: int) -> None:
        self.running = running
        self.max_waiting = max_waiting
        self._free = asyncio.Semaphore(running)
        self._waiting: dict[object, int] = {}  # per version (its backend), while > 0

    def waiting(self, version: object) -> int:
        return self._waiting.get(version, 0)

    async def run(
        self,
        executor: Executor,
        work: Callable[[threading.Event], T],
        *,
        version: object,
        label: str,
        on_full: Callable[[], None],
        client_gone: ClientGone | None = None,
    ) -> T:
        """``work(stop)`` in ``executor`` once a slot is free; ``stop`` is set when its
        client goes. ``ServiceOverloaded`` when ``max_waiting`` explanations of
        ``version`` (``label``: "model 'm' version 1") already wait; ``ClientClosedRequest``
        when ``client_gone`` returns first."""
        waiting = self.waiting(version)
        if self._free.locked() and waiting >= self.max_waiting:
            on_full()
            raise ServiceOverloaded(
                f"{label} is overloaded: {waiting} explanations already wait for an "
                f"inference thread (DRIFTGATE_MAX_WAITING_EXPLANATIONS; at most {self.running} "
                "run at once); retry shortly"
            )
        self._waiting[version] = waiting + 1
        acquiring = asyncio.ensure_future(self._free.acquire())
        try:
            await _unless_gone(acquiring, client_gone, label, "waited to be explained")
        except BaseException:
            # Cancelled in the very turn its slot was granted: the slot is nobody's.
            if acquiring.done() and not acquiring.cancelled():
                self._free.release()
            raise
        finally:
            left = self._waiting[version] - 1
            if left:
                self._waiting[version] = left
            else:
                del self._waiting[version]
        stop = threading.Event()
        try:
            running = executor.submit(work, stop)
        except BaseException:
            self._free.release()
            raise
        running.add_done_callback(_release_on(asyncio.get_running_loop(), self._free))
        try:
            return await _unless_gone(
                asyncio.wrap_future(running), client_gone, label, "was being explained"
            )
        except BaseException:
            stop.set()  # gone or cancelled: a running explanation stops at its next model call
            if not running.cancel():  # one no thread has started never runs
                # The request holds its version loaded until the thread is done with it.
                await until_finished(running)
            raise


async def _unless_gone(
    awaitable: Awaitable[T], client_gone: ClientGone | None, label: str, doing: str
) -> T:
    """``awaitable``'s result, unless ``client_gone`` returns first: ``ClientClosedRequest``."""
    task = asyncio.ensure_future(awaitable)
    if client_gone is None:
        return await task
    watcher = asyncio.ensure_future(client_gone())
    try:
        await asyncio.wait((task, watcher), return_when=asyncio.FIRST_COMPLETED)
    except BaseException:
        task.cancel()
        raise
    finally:
        watcher.cancel()
    if task.done():
        return task.result()
    task.cancel()
    raise ClientClosedRequest(f"the client closed the connection while {label} {doing}")


def _release_on(
    loop: asyncio.AbstractEventLoop, free: asyncio.Semaphore
) -> Callable[[Future[Any]], None]:
    """A done-callback (any thread) that gives the slot back on ``loop``."""

    def release(_: Future[Any]) -> None:
        with contextlib.suppress(RuntimeError):  # the loop closed: the runtime is stopping
            loop.call_soon_threadsafe(free.release)

    return release

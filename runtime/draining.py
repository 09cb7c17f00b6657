"""Stopping within a bound: how long requests in flight may take once the runtime is told
to stop, and what is said about those cut off.

On SIGTERM uvicorn stops accepting connections and waits for the requests in flight, for
at most ``DRIFTGATE_SHUTDOWN_TIMEOUT_S`` seconds (``--shutdown-timeout``, uvicorn's
``timeout_graceful_shutdown``); then it cancels those still running and the app's lifespan
closes the repository. Without a bound one hung model call, or one client that never reads
its answer, would hold the process until the orchestrator's SIGKILL. The default, 20 s, is
longer than a gateway route's default budget (``timeout_s``, 15 s), after which the
gateway no longer waits for the answer anyway, and leaves 10 s of Kubernetes' default
30 s grace period for the rest of the shutdown.

A request cut off this way whose model call runs in a worker thread still holds its model
version until that thread is done (``runtime.waiting``, ``runtime.batching``): the
repository's close retires the version but never unloads a backend under a running call.
The process exits without waiting for such a thread.

``RequestsInFlight`` is an ASGI middleware that counts the HTTP requests not yet answered,
so that the shutdown can say how many were cut off (``log_cut_off``).

The lifespan's end then waits for the log records still queued
(``monitoring.log_queue.flush_queued_logs``), the cut-off line among them.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from litestar.types import ASGIApp

log = logging.getLogger("driftgate.runtime")

#: Seconds requests in flight may take to finish once the runtime is told to stop.
DEFAULT_SHUTDOWN_TIMEOUT_S = 20


class InFlightCount:
    """HTTP requests being answered now, and those whose task was cancelled (by a shutdown
    that stopped waiting). Only the event loop changes them."""

    def __init__(self) -> None:
        self.running = 0
        self.cancelled = 0

    @property
    def unanswered(self) -> int:
        """Requests cut off: cancelled ones, and those still running (their task waits for
        a model call's thread to end before its cancellation is raised)."""
        return self.running + self.cancelled


class RequestsInFlight:
    """ASGI middleware: counts the requests it is answering into ``count``."""

    def __init__(self, app: ASGIApp, count: InFlightCount) -> None:
        self.app = app
        self.count = count

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        self.count.running += 1
        try:
            await self.app(scope, receive, send)
        except asyncio.CancelledError:
            self.count.cancelled += 1
            raise
        finally:
            self.count.running -= 1


def log_cut_off(count: InFlightCount, timeout_s: int) -> None:
    """At the lifespan's end: one line saying how many requests the shutdown cut off."""
    unanswered = count.unanswered
    if unanswered == 0:
        return
    requests = "1 request was" if unanswered == 1 else f"{unanswered} requests were"
    log.warning(
        "shutdown: %s cut off unanswered, still running after the %d s grace period "
        "(--shutdown-timeout, DRIFTGATE_SHUTDOWN_TIMEOUT_S); their clients' connections "
        "are closed",
        requests,
        timeout_s,
    )

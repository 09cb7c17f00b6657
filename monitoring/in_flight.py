"""Requests in flight, counted so that a bounded shutdown can say how many it cut off.

On SIGTERM uvicorn stops accepting connections and waits for the requests in flight for at
most its ``timeout_graceful_shutdown``; then it cancels those still running and runs the
app's lifespan end. Its own line ("Cancel N running task(s)") counts tasks, not requests,
and names no setting. The runtime (``runtime.draining``) and the gateway (``gateway.app``)
each wrap their app in ``RequestsInFlight`` and, at their lifespan's end, call
``log_cut_off``: one warning naming how many requests were cut off and the setting that
bounds the wait.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from litestar.types import ASGIApp


class InFlightCount:
    """HTTP requests being answered now, and those whose task was cancelled (by a shutdown
    that stopped waiting). Only the event loop changes them."""

    def __init__(self) -> None:
        self.running = 0
        self.cancelled = 0

    @property
    def unanswered(self) -> int:
        """Requests cut off: cancelled ones, and those still running (their task may not
        have run since it was cancelled, or waits for a thread to end first)."""
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


def log_cut_off(log: logging.Logger, count: InFlightCount, timeout_s: int, setting: str) -> None:
    """At the lifespan's end: one line on ``log`` saying how many requests the shutdown cut
    off after ``timeout_s`` seconds; ``setting`` names what sets that bound. Nothing when
    none was."""
    unanswered = count.unanswered
    if unanswered == 0:
        return
    requests = "1 request was" if unanswered == 1 else f"{unanswered} requests were"
    log.warning(
        "shutdown: %s cut off unanswered, still running after the %d s grace period "
        "(%s); their clients' connections are closed",
        requests,
        timeout_s,
        setting,
    )

"""Log records still queued when a server stops.

Litestar logs through a ``QueueHandler`` that a thread empties, and uvicorn ends the
process by raising SIGTERM again once the app has shut down: records still queued then are
lost, the shutdown's own among them (the runtime lost its last lines in 2 of 5 stops).
Both servers wait for them at the end of their lifespan with ``flush_queued_logs``.
"""

from __future__ import annotations

import asyncio
import logging
from logging.handlers import QueueHandler


async def flush_queued_logs(timeout_s: float = 2.0) -> None:
    """Wait (at most ``timeout_s``) until the records queued for the root logger's queue
    handlers are written."""
    queues = [h.queue for h in logging.getLogger().handlers if isinstance(h, QueueHandler)]
    deadline = asyncio.get_running_loop().time() + timeout_s
    while any(getattr(queue, "unfinished_tasks", 0) for queue in queues):
        if asyncio.get_running_loop().time() > deadline:
            return
        await asyncio.sleep(0.01)

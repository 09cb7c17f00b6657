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

The requests in flight are counted by ``monitoring.in_flight.RequestsInFlight``, as in the
gateway, so that the shutdown can say how many were cut off (``log_cut_off``).

The lifespan's end then waits for the log records still queued
(``monitoring.log_queue.flush_queued_logs``), the cut-off line among them.
"""

from __future__ import annotations

import logging

from monitoring import in_flight
from monitoring.in_flight import InFlightCount

log = logging.getLogger("driftgate.runtime")

#: Seconds requests in flight may take to finish once the runtime is told to stop.
DEFAULT_SHUTDOWN_TIMEOUT_S = 20


def log_cut_off(count: InFlightCount, timeout_s: int) -> None:
    """At the lifespan's end: one line saying how many requests the shutdown cut off."""
    in_flight.log_cut_off(log, count, timeout_s, "--shutdown-timeout, DRIFTGATE_SHUTDOWN_TIMEOUT_S")

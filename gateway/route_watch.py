"""Re-reads ``routes_dir`` on an interval, so a route changed there applies without a restart.

Several gateways sharing one ``routes_dir`` (several pods on one volume) see each other's
admin ``PUT`` and canary decisions this way, within ``POLL_S`` seconds; an operator can
also edit a file in place (``gateway.route_table`` says how changes are taken). Each change
is counted in ``driftgate_route_updates_total{route,operation="reload",outcome}`` (``applied``
or ``rejected``; a removed file counts as ``applied``) and is an INTERNAL span
``reload route {route}``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from opentelemetry.trace import SpanKind, Status, StatusCode, Tracer

from gateway.route_table import FileChange, RouteTable
from monitoring.gateway_metrics import GatewayMetrics

log = logging.getLogger("driftgate.gateway.routes")

#: Seconds between two reads of ``routes_dir``.
POLL_S = 2.0


class RouteFileWatcher:
    def __init__(
        self,
        routes: RouteTable,
        metrics: GatewayMetrics,
        tracer: Tracer,
        poll_s: float = POLL_S,
        *,
        on_change: Callable[[], None] = lambda: None,
    ) -> None:
        self.routes = routes
        self.metrics = metrics
        self.tracer = tracer
        self.poll_s = poll_s
        #: Called (on the event loop) after a reload changed a route.
        self.on_change = on_change

    async def run(self) -> None:
        """Re-read until cancelled."""
        while True:
            await asyncio.sleep(self.poll_s)
            try:
                await self.reload()
            except OSError as exc:  # the folder itself unreadable: try again next time
                log.error("could not read the routes folder %s: %s", self.routes.routes_dir, exc)
            except Exception:  # a bug must not stop route changes for good: log, go on
                log.exception("reading the routes folder %s failed", self.routes.routes_dir)

    async def reload(self) -> list[FileChange]:
        """Read the folder once and apply what changed; returns the changes."""
        scan = await asyncio.to_thread(self.routes.scan)
        changes = self.routes.apply(scan)
        for change in changes:
            self._report(change)
        if any(change.outcome != "rejected" for change in changes):
            self.on_change()
        return changes

    def _report(self, change: FileChange) -> None:
        outcome = "rejected" if change.outcome == "rejected" else "applied"
        self.metrics.route_updates.labels(change.route, "reload", outcome).inc()
        with self.tracer.start_as_current_span(
            f"reload route {change.route}",
            kind=SpanKind.INTERNAL,
            attributes={"driftgate.route": change.route, "driftgate.route.change": change.outcome},
        ) as span:
            if change.outcome == "rejected":
                span.set_status(Status(StatusCode.ERROR, change.error))

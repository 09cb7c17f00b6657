"""Active health checks: every replica's ``/v2/health/ready``, on an interval.

A replica that fails a check leaves the balancer's rotation until a check passes again
(passive ejection on request failures is the balancer's own business).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable

from gateway.balancer import ReplicaSet
from gateway.settings import HealthCheckSettings
from gateway.upstream import Upstream, UpstreamUnavailable

log = logging.getLogger("driftgate.gateway.health")


class HealthChecker:
    def __init__(
        self, replicas: ReplicaSet, upstream: Upstream, settings: HealthCheckSettings
    ) -> None:
        self.replicas = replicas
        self.upstream = upstream
        self.settings = settings
        self._healthy: dict[str, bool] = {}

    async def check_all(self) -> None:
        await self.check(self.replicas.urls)

    async def check(self, urls: Iterable[str]) -> None:
        await asyncio.gather(*(self._check(url) for url in urls))

    def forget(self, urls: Iterable[str]) -> None:
        """Replicas that left the pool (DNS discovery) no longer count."""
        for url in urls:
            self._healthy.pop(url, None)

    async def run(self) -> None:
        while True:
            await self.check_all()
            await asyncio.sleep(self.settings.interval_s)

    async def _check(self, url: str) -> None:
        try:
            response = await self.upstream.get(url + "/v2/health/ready", self.settings.timeout_s)
            healthy = response.status == 200
        except UpstreamUnavailable:
            healthy = False
        if url not in self.replicas.urls:
            return  # left the pool (DNS discovery) while it was checked
        if self._healthy.get(url) != healthy:
            log.log(
                logging.INFO if healthy else logging.WARNING,
                "replica %s is %s",
                url,
                "healthy" if healthy else "unhealthy",
            )
        self._healthy[url] = healthy
        self.replicas.set_health(url, healthy)

    def any_healthy(self) -> bool:
        return any(self._healthy.values())

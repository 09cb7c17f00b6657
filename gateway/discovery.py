"""Replica discovery by DNS: the runtime replicas are the addresses a name resolves to.

On Kubernetes the runtime pods sit behind a headless Service, whose name resolves to the
address of every ready pod (docs/deploy.md). ``replicas: {dns: NAME, port: 8001}`` in
gateway.yaml makes the gateway resolve ``NAME`` at start and every ``interval_s`` seconds
after, with the system resolver (``getaddrinfo``: the search domains of resolv.conf apply,
so a Service's short name works inside its namespace):

- addresses that appear join the pool and are health-checked at once;
- addresses that disappear leave it: requests in flight to them finish, then their idle
  connections and their metric series go;
- a replica that stays keeps its state (in-flight count, failures, ejection);
- a resolution that fails, or finds no address, keeps the replicas in use: a DNS outage
  must not empty a working pool. It is logged when it starts and when it ends, counted in
  ``driftgate_replica_discoveries_total{outcome="failed"}``, and its time is
  ``driftgate_replica_discovery_last_failure_timestamp_seconds`` (alert
  ``DriftgateReplicaDiscoveryFailing`` compares it with the last success's).
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import socket
import time
from collections.abc import Awaitable, Callable, Iterable

from opentelemetry.trace import SpanKind, Status, StatusCode, Tracer

from gateway.balancer import ReplicaSet
from gateway.health import HealthChecker
from gateway.settings import DnsDiscovery
from gateway.upstream import Upstream
from monitoring.gateway_metrics import GatewayMetrics

log = logging.getLogger("driftgate.gateway.discovery")

#: (name, port) -> the addresses the name resolves to; raises OSError when it cannot.
Resolver = Callable[[str, int], Awaitable[Iterable[str]]]


async def resolve_addresses(name: str, port: int) -> list[str]:
    """Every TCP address of ``name``, by the system resolver, in the order it gave them."""
    infos = await asyncio.get_running_loop().getaddrinfo(
        name, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP
    )
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


def replica_url(address: str, port: int) -> str:
    """``http://10.0.0.5:8001``, or ``http://[fd00::5]:8001`` for an IPv6 address."""
    host = f"[{address}]" if ipaddress.ip_address(address).version == 6 else address
    return f"http://{host}:{port}"


class ReplicaDiscovery:
    """Keeps ``replicas`` equal to what ``settings.name`` resolves to (see module doc)."""

    def __init__(
        self,
        settings: DnsDiscovery,
        *,
        replicas: ReplicaSet,
        health: HealthChecker,
        upstream: Upstream,
        metrics: GatewayMetrics,
        tracer: Tracer,
        resolve: Resolver = resolve_addresses,
    ) -> None:
        self.settings = settings
        self.replicas = replicas
        self.health = health
        self.upstream = upstream
        self.metrics = metrics
        self.tracer = tracer
        self.resolve = resolve
        self.last_error: str | None = None
        self.last_success: float | None = None  # Unix time
        for outcome in ("changed", "unchanged", "failed"):  # at 0, for increase() and alerts
            metrics.replica_discoveries.labels(outcome)

    async def run(self) -> None:
        """Resolve every ``interval_s`` until cancelled (the first resolution is the caller's)."""
        while True:
            await asyncio.sleep(self.settings.interval_s)
            try:
                await self.refresh()
            except Exception:  # a bug must not freeze the pool for good: log, go on
                log.exception("DNS discovery of %s failed unexpectedly", self.settings.name)

    async def refresh(self) -> str:
        """Resolve once and apply the result; returns the outcome (changed | unchanged | failed)."""
        name = self.settings.name
        with self.tracer.start_as_current_span(
            "discover replicas",
            kind=SpanKind.INTERNAL,
            attributes={"server.address": name, "server.port": self.settings.port},
        ) as span:
            try:
                addresses = sorted(await self.resolve(name, self.settings.port))
                if not addresses:
                    raise OSError("no address")
            except OSError as exc:
                outcome = self._failed(f"{type(exc).__name__}: {exc}")
                span.set_status(Status(StatusCode.ERROR, self.last_error))
                span.set_attribute("error.type", type(exc).__qualname__)
            else:
                outcome = await self._apply([replica_url(a, self.settings.port) for a in addresses])
                span.set_attribute("driftgate.replica.count", len(addresses))
            span.set_attribute("driftgate.discovery.outcome", outcome)
        self.metrics.replica_discoveries.labels(outcome).inc()
        return outcome

    def _failed(self, error: str) -> str:
        if self.last_error is None:
            log.warning(
                "DNS discovery of %s failed, the %d replicas in use stay: %s",
                self.settings.name,
                len(self.replicas.urls),
                error,
            )
        self.last_error = error
        self.metrics.replica_discovery_failed.set(time.time())
        return "failed"

    async def _apply(self, urls: list[str]) -> str:
        if self.last_error is not None:
            log.info("DNS discovery of %s works again", self.settings.name)
        self.last_error = None
        self.last_success = time.time()
        self.metrics.replica_discovery_succeeded.set(self.last_success)
        before = set(self.replicas.urls)
        if set(urls) == before:
            return "unchanged"
        added = [url for url in urls if url not in before]
        removed = sorted(before - set(urls))
        self.replicas.set_replicas(urls)
        for url in removed:
            self.upstream.forget(url)
            self.metrics.forget_replica(url)
        self.health.forget(removed)
        log.info(
            "replicas of %s: %d (added %s; removed %s)",
            self.settings.name,
            len(urls),
            ", ".join(added) or "none",
            ", ".join(removed) or "none",
        )
        await self.health.check(added)
        return "changed"

    def status(self) -> dict[str, object]:
        """For the admin API."""
        return {
            "dns": self.settings.name,
            "port": self.settings.port,
            "interval_s": self.settings.interval_s,
            "last_success_unix_s": self.last_success,
            "last_error": self.last_error,
        }

"""Prometheus metrics of the gateway, registered on the registry the app owns.

Labels are bounded: route (configured model names, or ``_unknown``), model and version
(of the target that answered), arm, role (primary | fallback | shadow), code, replica
(configured or discovered replica URLs: a replica that DNS discovery drops loses its
series), outcome. Never request ids or subjects.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from monitoring.metrics import LATENCY_BUCKETS


class GatewayMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        self.requests = Counter(
            "driftgate_requests_total",
            "Requests answered by the gateway, by route, answering target, arm, role and code.",
            ["route", "model", "version", "arm", "role", "code"],
            registry=registry,
        )
        self.request_duration = Histogram(
            "driftgate_request_duration_seconds",
            "Gateway end-to-end latency per request (auth, routing, upstream tries), by route, "
            "arm and dialect (v2, tfserving, eval, explain).",
            ["route", "arm", "dialect"],
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.upstream_duration = Histogram(
            "driftgate_upstream_duration_seconds",
            "Latency of one call from the gateway to a runtime replica.",
            ["replica", "role", "outcome"],
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.auth_key_refreshes = Counter(
            "driftgate_auth_key_refreshes_total",
            "Re-reads of the JWT verification keys (public_key_file, jwks_file or jwks_url) by "
            "outcome: changed | unchanged | failed (the keys in use stay).",
            ["outcome"],
            registry=registry,
        )
        self.auth_keys_loaded = Gauge(
            "driftgate_auth_keys_loaded_timestamp_seconds",
            "Unix time of the last successful read of the JWT verification keys.",
            registry=registry,
        )
        self.auth_keys_failed = Gauge(
            "driftgate_auth_keys_last_failure_timestamp_seconds",
            "Unix time of the last failed re-read of the JWT verification keys; 0 until the first.",
            registry=registry,
        )
        self.canary_decisions = Counter(
            "driftgate_canary_decisions_total",
            "Canary analysis decisions applied to a route: advance | promote | rollback.",
            ["route", "action"],
            registry=registry,
        )
        self.canary_weight = Gauge(
            "driftgate_canary_weight_percent",
            "Percent of a route's traffic its canary answers (0 after a rollback); "
            "routes without a canary have no series.",
            ["route"],
            registry=registry,
        )
        self.canary_leader = Gauge(
            "driftgate_canary_leader",
            "1 while this gateway makes the canary decisions for the gateways sharing its "
            "routes_dir (it holds the folder's lease); 0 while another one does.",
            registry=registry,
        )
        self.canary_lease_given_up = Counter(
            "driftgate_canary_lease_given_up_total",
            "Times this gateway gave the canary lease up after its looks failed "
            "(gateway.canary.MAX_FAILED_LOOKS in a row), so that another gateway decides.",
            registry=registry,
        )
        self.upstream_retries = Counter(
            "driftgate_upstream_retries_total",
            "Upstream tries repeated on another replica after a connection error or 503.",
            ["route"],
            registry=registry,
        )
        self.fallbacks = Counter(
            "driftgate_fallbacks_total",
            "Requests answered by a fallback target because the chosen target failed, by the "
            "fallback model, the reason and the target that failed.",
            ["route", "model", "reason", "failed_model", "failed_version"],
            registry=registry,
        )
        self.shadow_requests = Counter(
            "driftgate_shadow_requests_total",
            "Mirrored requests by outcome (ok | error | timeout | dropped: not sent, too many "
            "shadows in flight | circuit_open: not sent, the target's circuit is open).",
            ["route", "model", "version", "outcome"],
            registry=registry,
        )
        self.shadow_comparisons = Counter(
            "driftgate_shadow_comparisons_total",
            "Primary-versus-shadow comparisons by result (agree | disagree).",
            ["route", "model", "version", "result"],
            registry=registry,
        )
        self.auth_failures = Counter(
            "driftgate_auth_failures_total",
            "Requests refused by authentication: malformed credentials (400), none or invalid"
            " (401), missing scope (403).",
            ["code"],
            registry=registry,
        )
        self.client_timeouts = Counter(
            "driftgate_client_timeouts_total",
            "Connections closed because the client did not send a whole request within "
            "listen.client_timeout_s, by how far it got (connection | head | body).",
            ["phase"],
            registry=registry,
        )
        self.malformed_requests = Counter(
            "driftgate_malformed_requests_total",
            "Connections closed with 400 because what the client sent was not HTTP the parser "
            "could read (a bad method, header or chunk size; TLS to the plain port).",
            registry=registry,
        )
        self.route_updates = Counter(
            "driftgate_route_updates_total",
            "Route policy changes by operation (put | delete: the admin API; reload: a "
            "route file changed in routes_dir) and outcome (applied | rejected | "
            "precondition_failed: If-Match did not match | failed: routes_dir could not be "
            "written).",
            ["route", "operation", "outcome"],
            registry=registry,
        )
        self.replica_discoveries = Counter(
            "driftgate_replica_discoveries_total",
            "DNS resolutions of the replicas' name (`replicas: {dns: ...}`) by outcome: "
            "changed | unchanged | failed (the replicas in use stay).",
            ["outcome"],
            registry=registry,
        )
        self.replica_discovery_succeeded = Gauge(
            "driftgate_replica_discovery_last_success_timestamp_seconds",
            "Unix time of the last successful DNS resolution of the replicas' name.",
            registry=registry,
        )
        self.replica_discovery_failed = Gauge(
            "driftgate_replica_discovery_last_failure_timestamp_seconds",
            "Unix time of the last failed DNS resolution of the replicas' name; 0 until the first.",
            registry=registry,
        )

        # The children of the per-request series, looked up once each: ``labels()``
        # validates and locks, about 6 µs a call, three calls a proxied request.
        self._request_counts: dict[tuple[str, ...], Any] = {}
        self._request_durations: dict[tuple[str, ...], Any] = {}
        self._upstream_durations: dict[tuple[str, ...], Any] = {}

    def count_request(
        self, route: str, *, model: str, version: str, arm: str, role: str, code: str
    ) -> None:
        key = (route, model, version, arm, role, code)
        child = self._request_counts.get(key)
        if child is None:
            child = self._request_counts[key] = self.requests.labels(*key)
        child.inc()

    def observe_request(
        self, route: str, arm: str, dialect: str, seconds: float, exemplar: dict[str, str] | None
    ) -> None:
        key = (route, arm, dialect)
        child = self._request_durations.get(key)
        if child is None:
            child = self._request_durations[key] = self.request_duration.labels(*key)
        child.observe(seconds, exemplar)

    def observe_upstream(self, replica: str, role: str, outcome: str, seconds: float) -> None:
        key = (replica, role, outcome)
        child = self._upstream_durations.get(key)
        if child is None:
            child = self._upstream_durations[key] = self.upstream_duration.labels(*key)
        child.observe(seconds)

    def forget_replica(self, url: str) -> None:
        """Drop the series of a replica that left the pool (pods come and go)."""
        for key in [key for key in self._upstream_durations if key[0] == url]:
            del self._upstream_durations[key]
        for family in self.upstream_duration.collect():
            stale = {
                (sample.labels["replica"], sample.labels["role"], sample.labels["outcome"])
                for sample in family.samples
                if sample.labels.get("replica") == url
            }
            for labels in stale:
                self.upstream_duration.remove(*labels)


class ShadowAgreementCollector(Collector):
    """``driftgate_shadow_agreement_ratio``: agreeing / compared, per shadow target."""

    def __init__(self, comparisons: Counter) -> None:
        self._comparisons = comparisons

    def collect(self) -> Iterable[Metric]:
        family = GaugeMetricFamily(
            "driftgate_shadow_agreement_ratio",
            "Share of compared shadow responses that agree with the primary.",
            labels=["route", "model", "version"],
        )
        totals: dict[tuple[str, str, str], list[float]] = {}
        for metric in self._comparisons.collect():
            for sample in metric.samples:
                if not sample.name.endswith("_total"):
                    continue
                key = (sample.labels["route"], sample.labels["model"], sample.labels["version"])
                counts = totals.setdefault(key, [0.0, 0.0])
                counts[1] += sample.value
                if sample.labels["result"] == "agree":
                    counts[0] += sample.value
        for key, (agree, total) in totals.items():
            if total:
                family.add_metric(list(key), agree / total)
        yield family


class ReplicaCollector(Collector):
    """Replica health, ejection and in-flight requests, read at scrape time."""

    def __init__(self, snapshot: Callable[[], Iterable[tuple[str, bool, bool, int]]]) -> None:
        self._snapshot = snapshot

    def collect(self) -> Iterable[Metric]:
        healthy = GaugeMetricFamily(
            "driftgate_replica_healthy",
            "1 when the replica passes active health checks and is not ejected.",
            labels=["replica"],
        )
        ejected = GaugeMetricFamily(
            "driftgate_replica_ejected",
            "1 while the replica is ejected after consecutive failures.",
            labels=["replica"],
        )
        outstanding = GaugeMetricFamily(
            "driftgate_replica_outstanding_requests",
            "Requests in flight to the replica.",
            labels=["replica"],
        )
        for url, is_healthy, is_ejected, in_flight in self._snapshot():
            healthy.add_metric([url], 1.0 if is_healthy and not is_ejected else 0.0)
            ejected.add_metric([url], 1.0 if is_ejected else 0.0)
            outstanding.add_metric([url], float(in_flight))
        yield healthy
        yield ejected
        yield outstanding

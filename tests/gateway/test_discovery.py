"""Replica discovery by DNS (gateway/discovery.py): the pool follows what a name resolves to.

The resolver is scripted here (a list of answers, one per resolution), since the system
resolver cannot be told to change its answers; the system resolver itself is exercised on
``localhost``. Health checks go to a fake runtime, over the httpx API.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import time
from collections.abc import Iterable, Sequence

import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode
from prometheus_client import CollectorRegistry

from gateway.balancer import EjectionSettings, ReplicaSet
from gateway.discovery import ReplicaDiscovery, replica_url, resolve_addresses
from gateway.health import HealthChecker
from gateway.settings import DnsDiscovery, GatewaySettings, HealthCheckSettings
from gateway.upstream import HttpxUpstream
from monitoring.gateway_metrics import GatewayMetrics
from monitoring.tracing import build_tracer_provider
from tests.gateway.fakes import FakeRuntime, run_gateway

PORT = 8001


class ScriptedDns:
    """Answers each resolution with the next scripted answer: addresses, or an error."""

    def __init__(self, *answers: Sequence[str] | OSError) -> None:
        self.answers = list(answers)
        self.asked: list[tuple[str, int]] = []

    async def __call__(self, name: str, port: int) -> Iterable[str]:
        self.asked.append((name, port))
        answer = self.answers.pop(0)
        if isinstance(answer, OSError):
            raise answer
        return answer


class ForgetfulUpstream(HttpxUpstream):
    """The httpx upstream, noting which replicas it was told to forget."""

    def __init__(self, runtime: FakeRuntime) -> None:
        super().__init__(runtime.transport())
        self.forgotten: list[str] = []

    def forget(self, base_url: str) -> None:
        self.forgotten.append(base_url)


class Pool:
    """A discovery with everything it drives: replicas, health checks, metrics, spans."""

    def __init__(self, dns: ScriptedDns, runtime: FakeRuntime) -> None:
        self.runtime = runtime
        self.replicas = ReplicaSet([], EjectionSettings(consecutive_failures=1))
        self.upstream = ForgetfulUpstream(runtime)
        self.health = HealthChecker(self.replicas, self.upstream, HealthCheckSettings())
        self.registry = CollectorRegistry()
        self.metrics = GatewayMetrics(self.registry)
        self.spans = InMemorySpanExporter()
        self.discovery = ReplicaDiscovery(
            DnsDiscovery("driftgate-runtime", PORT),
            replicas=self.replicas,
            health=self.health,
            upstream=self.upstream,
            metrics=self.metrics,
            tracer=build_tracer_provider("test", self.spans).get_tracer("test"),
            resolve=dns,
        )

    def refresh(self) -> str:
        return asyncio.run(self.discovery.refresh())

    def count(self, outcome: str) -> float | None:
        return self.registry.get_sample_value(
            "driftgate_replica_discoveries_total", {"outcome": outcome}
        )

    def health_checks(self) -> list[str]:
        return [call.replica for call in self.runtime.calls if call.path == "/v2/health/ready"]


def runtime_at(*addresses: str) -> FakeRuntime:
    return FakeRuntime(replicas=[f"{address}:{PORT}" for address in addresses])


def test_the_pool_is_what_the_name_resolves_to_and_new_replicas_are_checked_at_once() -> None:
    runtime = runtime_at("10.0.0.5", "10.0.0.7")
    runtime.set_ready("10.0.0.7:8001", False)
    pool = Pool(ScriptedDns(["10.0.0.7", "10.0.0.5"]), runtime)

    assert pool.refresh() == "changed"

    assert pool.replicas.urls == ("http://10.0.0.5:8001", "http://10.0.0.7:8001")  # sorted
    assert sorted(pool.health_checks()) == ["10.0.0.5:8001", "10.0.0.7:8001"]
    healthy = {s.url: s.healthy for s in pool.replicas.snapshot(0.0)}
    assert healthy == {"http://10.0.0.5:8001": True, "http://10.0.0.7:8001": False}
    assert pool.count("changed") == 1
    assert pool.count("failed") == 0  # at 0 before any failure, for increase() and alerts
    assert pool.registry.get_sample_value(
        "driftgate_replica_discovery_last_success_timestamp_seconds"
    )


def test_replicas_that_stay_keep_their_state_and_only_newcomers_are_checked() -> None:
    runtime = runtime_at("10.0.0.5", "10.0.0.7", "10.0.0.9")
    pool = Pool(
        ScriptedDns(["10.0.0.5", "10.0.0.7"], ["10.0.0.9", "10.0.0.5", "10.0.0.7"]), runtime
    )
    pool.refresh()
    pool.replicas.acquire("http://10.0.0.5:8001")
    pool.replicas.record_failure("http://10.0.0.7:8001", now=0.0)  # ejected
    runtime.reset_calls()

    assert pool.refresh() == "changed"

    assert pool.health_checks() == ["10.0.0.9:8001"]
    state = {s.url: s for s in pool.replicas.snapshot(1.0)}
    assert state["http://10.0.0.5:8001"].outstanding == 1
    assert state["http://10.0.0.7:8001"].ejected
    assert not state["http://10.0.0.9:8001"].ejected


def test_a_replica_whose_address_is_gone_leaves_with_its_connections_and_series() -> None:
    runtime = runtime_at("10.0.0.5", "10.0.0.7")
    pool = Pool(ScriptedDns(["10.0.0.5", "10.0.0.7"], ["10.0.0.5"], ["10.0.0.5"]), runtime)
    pool.refresh()
    gone = "http://10.0.0.7:8001"
    pool.replicas.acquire(gone)  # a request in flight to it
    for replica in pool.replicas.urls:
        pool.metrics.observe_upstream(replica, "primary", "200", 0.01)

    assert pool.refresh() == "changed"
    assert pool.refresh() == "unchanged"

    assert pool.replicas.urls == ("http://10.0.0.5:8001",)
    assert pool.upstream.forgotten == [gone]
    replicas_in_series = {
        sample.labels["replica"]
        for family in pool.metrics.upstream_duration.collect()
        for sample in family.samples
    }
    assert replicas_in_series == {"http://10.0.0.5:8001"}
    pool.replicas.release(gone)  # the request in flight ends: ignored, no error
    # A pod that comes back at the same address gets its series again, not a forgotten one.
    pool.metrics.observe_upstream(gone, "primary", "200", 0.02)
    assert (
        pool.registry.get_sample_value(
            "driftgate_upstream_duration_seconds_count",
            {"replica": gone, "role": "primary", "outcome": "200"},
        )
        == 1.0
    )
    assert pool.count("changed") == 2
    assert pool.count("unchanged") == 1


def test_a_failed_or_empty_resolution_keeps_the_replicas_in_use(
    caplog: pytest.LogCaptureFixture,
) -> None:
    runtime = runtime_at("10.0.0.5")
    no_such_name = socket.gaierror(socket.EAI_NONAME, "Name or service not known")
    dns = ScriptedDns(["10.0.0.5"], no_such_name, [], ["10.0.0.5"])
    pool = Pool(dns, runtime)
    pool.refresh()
    caplog.clear()

    with caplog.at_level(logging.INFO, logger="driftgate.gateway.discovery"):
        assert pool.refresh() == "failed"
        assert pool.refresh() == "failed"
        assert pool.replicas.urls == ("http://10.0.0.5:8001",)
        assert pool.discovery.status()["last_error"] == "OSError: no address"
        assert pool.refresh() == "unchanged"

    assert pool.count("failed") == 2
    assert pool.discovery.status()["last_error"] is None
    messages = [record.getMessage() for record in caplog.records]
    assert messages == [
        "DNS discovery of driftgate-runtime failed, the 1 replicas in use stay: "
        "gaierror: [Errno -2] Name or service not known",
        "DNS discovery of driftgate-runtime works again",
    ]  # one warning when it starts failing, not one per try
    assert dns.asked == [("driftgate-runtime", PORT)] * 4


def test_a_replica_gone_while_it_was_checked_does_not_count_as_healthy() -> None:
    runtime = runtime_at("10.0.0.5", "10.0.0.7")
    pool = Pool(ScriptedDns(["10.0.0.5", "10.0.0.7"], ["10.0.0.5"]), runtime)
    runtime.set_ready("10.0.0.5:8001", False)
    pool.refresh()
    assert pool.health.any_healthy()  # 10.0.0.7 is

    pool.refresh()

    assert not pool.health.any_healthy()  # only 10.0.0.5 is left, and it is not ready


def test_each_resolution_is_a_span() -> None:
    runtime = runtime_at("10.0.0.5")
    pool = Pool(ScriptedDns(["10.0.0.5"], socket.gaierror(socket.EAI_AGAIN, "try again")), runtime)
    pool.refresh()
    pool.refresh()

    spans = [s for s in pool.spans.get_finished_spans() if s.name == "discover replicas"]
    ok, failed = (dict(s.attributes or {}) for s in spans)
    assert (ok["driftgate.discovery.outcome"], failed["driftgate.discovery.outcome"]) == (
        "changed",
        "failed",
    )
    assert ok["server.address"] == "driftgate-runtime"
    assert ok["server.port"] == PORT
    assert ok["driftgate.replica.count"] == 1
    assert spans[1].status.status_code is StatusCode.ERROR
    assert failed["error.type"] == "gaierror"


def test_replica_urls_bracket_ipv6_addresses() -> None:
    assert replica_url("10.0.0.5", 8001) == "http://10.0.0.5:8001"
    assert replica_url("fd00::5", 8001) == "http://[fd00::5]:8001"


def test_the_system_resolver_finds_localhost() -> None:
    addresses = asyncio.run(resolve_addresses("localhost", PORT))

    assert "127.0.0.1" in addresses or "::1" in addresses
    assert len(addresses) == len(set(addresses))


def test_a_gateway_configured_with_a_dns_name_serves_through_what_it_finds() -> None:
    runtime = FakeRuntime(replicas=["127.0.0.1:9001", "[::1]:9001"])  # what localhost may be
    settings = GatewaySettings.from_dict(
        {
            "replicas": {"dns": "localhost", "port": 9001, "interval_s": 60},
            "auth": {"enabled": False},
            "health_check": {"interval_s": 0.05},
        }
    )

    with run_gateway(settings, runtime) as gateway:
        answer = gateway.client.post("/v2/models/iris/infer", json={"inputs": []})
        listed = gateway.client.get("/admin/replicas").json()
        changed = gateway.metric("driftgate_replica_discoveries_total", outcome="changed")

    assert answer.status_code == 200, answer.text
    assert runtime.inference_calls()[0].replica in {"127.0.0.1:9001", "[::1]:9001"}
    assert {r["url"] for r in listed["replicas"]} <= {
        "http://127.0.0.1:9001",
        "http://[::1]:9001",
    }
    assert listed["discovery"]["dns"] == "localhost"
    assert listed["discovery"]["last_error"] is None
    assert changed == 1


def test_a_gateway_whose_name_does_not_resolve_starts_unready_and_answers_503() -> None:
    """The system resolver really fails here: ``.invalid`` is reserved never to resolve."""
    settings = GatewaySettings.from_dict(
        {
            "replicas": {"dns": "driftgate-no-such-host.invalid", "port": 9001, "interval_s": 60},
            "auth": {"enabled": False},
        }
    )

    with run_gateway(settings, FakeRuntime(replicas=[])) as gateway:
        answer = gateway.client.post("/v2/models/iris/infer", json={"inputs": []})
        ready = gateway.client.get("/v2/health/ready")
        listed = gateway.client.get("/admin/replicas").json()
        failed = gateway.metric("driftgate_replica_discoveries_total", outcome="failed")

    assert answer.status_code == 503, answer.text
    assert "no runtime replica is available" in answer.text
    assert ready.status_code == 503
    assert listed["replicas"] == []
    assert listed["discovery"]["last_success_unix_s"] is None
    assert listed["discovery"]["last_error"].startswith("gaierror: ")
    assert failed == 1


def test_the_times_of_the_last_good_and_failed_resolutions_are_exported() -> None:
    """DriftgateReplicaDiscoveryFailing compares the two (docs/runbook.md): a failure later
    than the last success is a pool that has stopped following its name."""
    no_such_name = socket.gaierror(socket.EAI_NONAME, "Name or service not known")
    pool = Pool(ScriptedDns(["10.0.0.5"], no_such_name, ["10.0.0.5"]), runtime_at("10.0.0.5"))

    def times() -> tuple[float | None, float | None]:
        return (
            pool.registry.get_sample_value(
                "driftgate_replica_discovery_last_success_timestamp_seconds"
            ),
            pool.registry.get_sample_value(
                "driftgate_replica_discovery_last_failure_timestamp_seconds"
            ),
        )

    assert times() == (0.0, 0.0)  # 0 until the first of each
    pool.refresh()
    succeeded, failed = times()
    assert succeeded and failed == 0.0
    before = time.time()
    pool.refresh()
    assert times()[0] == succeeded
    assert (times()[1] or 0.0) >= before
    pool.refresh()
    assert (times()[0] or 0.0) > (times()[1] or 0.0)

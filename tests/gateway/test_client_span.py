"""Tracing plumbing of the hot path: the CLIENT span of one upstream call ends on every way
out (cancellation included), and request headers are decoded once per request."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping

from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode
from prometheus_client import CollectorRegistry

from gateway.balancer import ReplicaSet
from gateway.dialects import parse_inference_path
from gateway.dispatcher import Dispatcher, ProxyRequest
from gateway.policy import Target
from gateway.upstream import UpstreamResponse
from monitoring.gateway_metrics import GatewayMetrics
from monitoring.tracing import build_tracer_provider, request_headers

REPLICA = "http://127.0.0.1:9"


class HangingUpstream:
    """Never answers: the call is cancelled from outside, as when the client goes away."""

    async def send(
        self, method: str, url: str, headers: Mapping[str, str], body: bytes, timeout_s: float
    ) -> UpstreamResponse:
        await asyncio.Event().wait()
        raise AssertionError("unreachable")

    async def get(self, url: str, timeout_s: float) -> UpstreamResponse:
        raise NotImplementedError

    def forget(self, base_url: str) -> None:
        return None

    async def close(self) -> None:
        return None


def test_a_cancelled_call_ends_its_span_as_an_error_and_frees_the_replica() -> None:
    spans = InMemorySpanExporter()
    registry = CollectorRegistry()
    replicas = ReplicaSet([REPLICA])
    dispatcher = Dispatcher(
        replicas=replicas,
        upstream=HangingUpstream(),
        metrics=GatewayMetrics(registry),
        tracer=build_tracer_provider("test", spans).get_tracer("test"),
    )
    path = parse_inference_path("/v2/models/iris/infer")
    assert path is not None
    request = ProxyRequest("iris", "iris", path, "req-1", {}, b"{}")

    async def cancel_mid_call() -> None:
        call = asyncio.create_task(
            dispatcher.call(REPLICA, request, Target("iris"), timeout_s=5.0, role="primary")
        )
        await asyncio.sleep(0.01)
        call.cancel()
        try:
            await call
        except asyncio.CancelledError:
            return
        raise AssertionError("the call was not cancelled")

    asyncio.run(cancel_mid_call())

    [span] = spans.get_finished_spans()
    assert span.kind is SpanKind.CLIENT
    assert span.status.status_code is StatusCode.ERROR
    assert span.attributes is not None
    assert span.attributes["error.type"] == "CancelledError"
    [status] = replicas.snapshot(0.0)
    assert status.outstanding == 0  # released: no longer counted as in flight
    sample = registry.get_sample_value(
        "driftgate_upstream_duration_seconds_count",
        {"replica": REPLICA, "role": "primary", "outcome": "error"},
    )
    assert sample == 1


def test_request_headers_are_decoded_once_and_kept_in_the_scope() -> None:
    scope = {"headers": [(b"user-agent", b"curl/8"), (b"x-a", b"1"), (b"x-a", b"2")]}
    headers = request_headers(scope)
    assert headers == {"user-agent": "curl/8", "x-a": "2"}  # the last repeated one wins
    scope["headers"] = []
    assert request_headers(scope) is headers

"""The server-span middleware and the tracer set-up shared by runtime and gateway.

``ServerSpanMiddleware`` starts and attaches its span by hand (not with
``start_as_current_span``), so what the context manager did for free is checked here: the
span is current inside the app, an exception is recorded on it and sets an ERROR status,
and the context is detached afterwards whatever happened.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from monitoring.tracing import ServerSpanMiddleware, build_tracer_provider

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"


def scope(path: str = "/v1/models/iris/eval", headers: dict[str, str] | None = None) -> Any:
    return {
        "type": "http",
        "method": "POST",
        "path": path,
        "scheme": "http",
        "server": ("127.0.0.1", 8000),
        "client": ("10.0.0.7", 50000),
        "headers": [(k.encode(), v.encode()) for k, v in (headers or {}).items()],
        "path_template": "/v1/models/{model}/eval",
    }


async def receive() -> dict[str, Any]:
    return {"type": "http.request", "body": b"", "more_body": False}


App = Any  # (tracer, scope, receive, send) -> awaitable: the app behind the middleware


def serve(app: App, request_scope: Any) -> tuple[list[Any], BaseException | None]:
    """Finished spans, and what the middleware raised (None: nothing)."""
    exporter = InMemorySpanExporter()
    tracer = build_tracer_provider("test", exporter).get_tracer("test")

    async def send(_: dict[str, Any]) -> None:
        pass

    middleware = ServerSpanMiddleware(lambda s, r, w: app(tracer, s, r, w), tracer, frozenset())

    async def run() -> BaseException | None:
        try:
            await middleware(request_scope, receive, send)
            raised = None
        except Exception as exc:
            raised = exc
        # Detached, whatever happened: nothing leaks into the next request.
        assert not trace.get_current_span().get_span_context().is_valid
        return raised

    raised = asyncio.run(run())
    return list(exporter.get_finished_spans()), raised


async def answer(tracer: Any, _scope: Any, _receive: Any, send: Any, status: int = 200) -> None:
    with tracer.start_as_current_span("inner"):
        pass
    await send({"type": "http.response.start", "status": status, "headers": []})
    await send({"type": "http.response.body", "body": b"{}"})


def test_the_span_continues_traceparent_is_current_inside_and_names_the_route() -> None:
    traceparent = f"00-{TRACE_ID}-00f067aa0ba902b7-01"
    (inner, server), raised = serve(
        answer, scope(headers={"traceparent": traceparent, "user-agent": "curl/8"})
    )

    assert raised is None
    assert server.kind is SpanKind.SERVER
    assert server.name == "POST /v1/models/{model}/eval"
    assert format(server.context.trace_id, "032x") == TRACE_ID
    assert inner.parent.span_id == server.context.span_id
    assert server.attributes["http.route"] == "/v1/models/{model}/eval"
    assert server.attributes["http.response.status_code"] == 200
    assert server.attributes["client.address"] == "10.0.0.7"
    assert server.attributes["user_agent.original"] == "curl/8"
    assert server.status.status_code is StatusCode.UNSET


def test_a_5xx_answer_is_an_error_with_its_code() -> None:
    async def unavailable(tracer: Any, s: Any, r: Any, send: Any) -> None:
        await answer(tracer, s, r, send, status=503)

    (_, server), _ = serve(unavailable, scope())

    assert server.attributes["http.response.status_code"] == 503
    assert server.attributes["error.type"] == "503"
    assert server.status.status_code is StatusCode.ERROR


def test_an_exception_is_recorded_with_an_error_status_and_the_context_detached() -> None:
    async def broken(*_: Any) -> None:
        raise RuntimeError("model exploded")

    (server,), raised = serve(broken, scope())

    assert isinstance(raised, RuntimeError)
    assert server.status.status_code is StatusCode.ERROR
    assert server.status.description == "RuntimeError: model exploded"
    assert [event.name for event in server.events] == ["exception"]
    assert server.attributes["http.response.status_code"] == 500
    assert server.attributes["error.type"] == "500"


def test_the_standard_sampler_variables_are_honoured(monkeypatch: pytest.MonkeyPatch) -> None:
    """docs/tracing.md, "Sampling": 10% of new traces, children follow their parent."""
    monkeypatch.setenv("OTEL_TRACES_SAMPLER", "parentbased_traceidratio")
    monkeypatch.setenv("OTEL_TRACES_SAMPLER_ARG", "0.1")
    exporter = InMemorySpanExporter()
    tracer = build_tracer_provider("test", exporter).get_tracer("test")

    for _ in range(2000):
        with tracer.start_as_current_span("root"), tracer.start_as_current_span("child"):
            pass

    spans = exporter.get_finished_spans()
    roots = [s for s in spans if s.name == "root"]
    children = [s for s in spans if s.name == "child"]
    assert 100 <= len(roots) <= 300  # binomial(2000, 0.1): 200 +- 13.4
    assert len(children) == len(roots)

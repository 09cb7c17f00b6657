"""The server-span middleware and the tracer set-up shared by runtime and gateway.

``ServerSpanMiddleware`` starts and attaches its span by hand (not with
``start_as_current_span``), so what the context manager did for free is checked here: the
span is current inside the app, an exception is recorded on it and sets an ERROR status,
and the context is detached afterwards whatever happened.

A process with no exporter records no span (``UnexportedTracer``) but still gives each one
the ids and sampling decision the SDK would: those are checked at the end.
"""

from __future__ import annotations

import asyncio
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import NoOpTracer, SpanKind, StatusCode
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from monitoring.tracing import (
    ServerSpanMiddleware,
    UnexportedTracer,
    build_tracer_provider,
    current_trace_id,
)

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


def test_without_an_exporter_spans_carry_ids_and_record_nothing() -> None:
    tracer = build_tracer_provider("test").get_tracer("test")
    assert isinstance(tracer, UnexportedTracer)

    with tracer.start_as_current_span("root") as root:
        child = tracer.start_span("child", kind=SpanKind.CLIENT, attributes={"url.full": "x"})
        assert current_trace_id() == root.get_span_context().trace_id  # exemplars, the log
    assert trace.get_current_span() is trace.INVALID_SPAN  # detached on exit

    assert not root.is_recording() and not child.is_recording()
    root_context, child_context = root.get_span_context(), child.get_span_context()
    assert root_context.is_valid and root_context.trace_flags.sampled  # parentbased_always_on
    assert child_context.trace_id == root_context.trace_id
    assert child_context.span_id != root_context.span_id
    carrier: dict[str, str] = {}
    TraceContextTextMapPropagator().inject(carrier, trace.set_span_in_context(child))
    assert carrier["traceparent"] == (
        f"00-{root_context.trace_id:032x}-{child_context.span_id:016x}-03"  # sampled, random id
    )


def test_without_an_exporter_the_middleware_continues_traceparent() -> None:
    tracer = build_tracer_provider("test").get_tracer("test")
    seen: list[trace.SpanContext] = []

    async def app(_scope: Any, _receive: Any, send: Any) -> None:
        seen.append(trace.get_current_span().get_span_context())
        await send({"type": "http.response.start", "status": 200, "headers": []})

    async def send(_: dict[str, Any]) -> None:
        pass

    parent = f"00-{TRACE_ID}-00f067aa0ba902b7-01"
    middleware = ServerSpanMiddleware(app, tracer, frozenset())
    asyncio.run(middleware(scope(headers={"traceparent": parent}), receive, send))

    assert f"{seen[0].trace_id:032x}" == TRACE_ID
    assert seen[0].span_id != 0x00F067AA0BA902B7 and seen[0].trace_flags.sampled
    assert trace.get_current_span() is trace.INVALID_SPAN


def test_without_an_exporter_the_sampler_still_decides(monkeypatch: pytest.MonkeyPatch) -> None:
    """An unsampled request carries no trace id into exemplars or the prediction log."""
    monkeypatch.setenv("OTEL_TRACES_SAMPLER", "parentbased_traceidratio")
    monkeypatch.setenv("OTEL_TRACES_SAMPLER_ARG", "0.1")
    tracer = build_tracer_provider("test").get_tracer("test")

    sampled = 0
    for _ in range(2000):
        with tracer.start_as_current_span("root"), tracer.start_as_current_span("child") as child:
            sampled += current_trace_id() is not None
            assert child.get_span_context().is_valid
    assert 100 <= sampled <= 300  # binomial(2000, 0.1): 200 +- 13.4


def test_an_exporter_makes_spans_recorded_and_a_disabled_sdk_makes_none(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    exporter = InMemorySpanExporter()
    with build_tracer_provider("test", exporter).get_tracer("test").start_as_current_span("a"):
        assert trace.get_current_span().is_recording()
    assert [span.name for span in exporter.get_finished_spans()] == ["a"]

    monkeypatch.setenv("OTEL_SDK_DISABLED", "true")
    assert isinstance(build_tracer_provider("test").get_tracer("test"), NoOpTracer)


class OtlpReceiver:
    """A local OTLP/HTTP endpoint that decodes every export and remembers its span count."""

    def __init__(self) -> None:
        from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
            ExportTraceServiceRequest,
        )

        self.exports: list[int] = []
        exports = self.exports

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                request = ExportTraceServiceRequest()
                request.ParseFromString(self.rfile.read(int(self.headers["content-length"])))
                exports.append(
                    sum(len(s.spans) for r in request.resource_spans for s in r.scope_spans)
                )
                self.send_response(200)
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:  # quiet
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1/traces"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


@pytest.mark.parametrize(("variable", "largest"), [(None, 64), ("100", 100)])
def test_otlp_exports_go_in_batches_of_64_spans_unless_the_variable_says(
    monkeypatch: pytest.MonkeyPatch, variable: str | None, largest: int
) -> None:
    """Small batches: the exporter's thread holds the GIL while it encodes one."""
    receiver = OtlpReceiver()
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", receiver.url)
    if variable is None:
        monkeypatch.delenv("OTEL_BSP_MAX_EXPORT_BATCH_SIZE", raising=False)
    else:
        monkeypatch.setenv("OTEL_BSP_MAX_EXPORT_BATCH_SIZE", variable)
    provider = build_tracer_provider("test")
    tracer = provider.get_tracer("test")
    try:
        for index in range(130):
            tracer.start_span(f"span {index}").end()
        assert provider.force_flush(10_000)
    finally:
        provider.shutdown()
        receiver.server.shutdown()

    assert sum(receiver.exports) == 130  # every span, over real OTLP/HTTP
    assert max(receiver.exports) == largest  # batches fill up to the limit, never past it

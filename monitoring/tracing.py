"""OpenTelemetry set-up and the server-span middleware shared by runtime and gateway.

``build_tracer_provider`` makes one provider per process (or per app in tests):
- an explicit ``span_exporter`` (tests pass ``InMemorySpanExporter``) is used as is;
- otherwise OTLP over http/protobuf when the standard ``OTEL_EXPORTER_OTLP_ENDPOINT`` /
  ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`` or ``OTEL_TRACES_EXPORTER=otlp`` is set, in
  batches of ``EXPORT_BATCH_SIZE`` spans unless ``OTEL_BSP_MAX_EXPORT_BATCH_SIZE`` says;
- otherwise no exporter, and then no span is recorded: the provider's tracers
  (``UnexportedTracer``) still give every span its ids and sampling decision, which
  exemplars, the prediction log and ``traceparent`` use, and skip the recording nobody
  would read (half of the gateway's own CPU per request; docs/tracing.md).

``ServerSpanMiddleware`` is a plain ASGI middleware that continues an incoming W3C
``traceparent`` and records a SERVER span with the stable HTTP semantic conventions
(``http.request.method``, ``url.path``, ``http.route``, ``http.response.status_code``...).
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor, SpanExporter
from opentelemetry.sdk.trace.sampling import Decision
from opentelemetry.trace import (
    Link,
    NonRecordingSpan,
    NoOpTracer,
    SpanContext,
    SpanKind,
    Status,
    StatusCode,
    TraceFlags,
)
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
from opentelemetry.util.types import Attributes

_PROPAGATOR = TraceContextTextMapPropagator()
#: Spans per OTLP export (the SDK's default is 512). The exporter's thread holds the GIL
#: while it encodes a batch, and every request waits behind it: measured on the gateway,
#: p99 at one connection 8.9-9.9 ms with 64 against 14-18 ms with 512, same CPU
#: (docs/tracing.md, "Sampling, and what spans cost").
EXPORT_BATCH_SIZE = 64
_BATCH_SIZE_VARIABLE = "OTEL_BSP_MAX_EXPORT_BATCH_SIZE"
ASGIApp = Any


def build_tracer_provider(
    service_name: str, span_exporter: SpanExporter | None = None
) -> TracerProvider:
    provider = _TracerProvider(resource=Resource.create({"service.name": service_name}))
    if span_exporter is not None:
        provider.add_span_processor(SimpleSpanProcessor(span_exporter))
    elif _otlp_requested():
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        size = None if os.environ.get(_BATCH_SIZE_VARIABLE) else EXPORT_BATCH_SIZE
        provider.add_span_processor(
            BatchSpanProcessor(OTLPSpanExporter(), max_export_batch_size=size)
        )
    return provider


def _otlp_requested() -> bool:
    if os.environ.get("OTEL_SDK_DISABLED", "").lower() == "true":
        return False
    exporter = os.environ.get("OTEL_TRACES_EXPORTER", "")
    if exporter:
        return "otlp" in exporter.split(",")
    return bool(
        os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT")
        or os.environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
    )


class _TracerProvider(TracerProvider):
    """The SDK's provider, whose tracers record spans only once a span processor is added
    (``build_tracer_provider`` adds it, if any, before anyone asks for a tracer)."""

    exporting = False

    def add_span_processor(self, span_processor: Any) -> None:
        self.exporting = True
        super().add_span_processor(span_processor)

    def get_tracer(self, *args: Any, **kwargs: Any) -> trace.Tracer:
        tracer = super().get_tracer(*args, **kwargs)
        if self.exporting or isinstance(tracer, NoOpTracer):  # NoOp: OTEL_SDK_DISABLED
            return tracer
        return UnexportedTracer(self)


class UnexportedTracer(trace.Tracer):
    """A tracer for a process that exports no spans: ids without recording.

    Each span gets the ids, sampling decision and flags the SDK's tracer would give it
    (same sampler, same id generator), so a trace id still reaches exemplars, the prediction
    log and the ``traceparent`` sent to replicas. Its attributes, events and status are
    dropped on arrival (``NonRecordingSpan``): with no span processor the SDK would build
    and validate them only to throw them away, about 50 µs per span.
    """

    def __init__(self, provider: TracerProvider) -> None:
        self._sampler = provider.sampler
        self._ids = provider.id_generator

    # The signatures are opentelemetry.trace.Tracer's, positional arguments included.
    def start_span(  # noqa: PLR0917
        self,
        name: str,
        context: otel_context.Context | None = None,
        kind: SpanKind = SpanKind.INTERNAL,
        attributes: Attributes = None,
        links: Sequence[Link] | None = (),
        start_time: int | None = None,
        record_exception: bool = True,
        set_status_on_exception: bool = True,
    ) -> trace.Span:
        parent = trace.get_current_span(context).get_span_context()
        if parent.is_valid:
            trace_id, random_id = parent.trace_id, parent.trace_flags.random_trace_id
        else:
            trace_id, random_id = self._ids.generate_trace_id(), self._ids.is_trace_id_random()
        sampling = self._sampler.should_sample(context, trace_id, name, kind, attributes, links)
        flags = (
            TraceFlags.SAMPLED
            if sampling.decision is Decision.RECORD_AND_SAMPLE
            else TraceFlags.DEFAULT
        )
        if random_id:
            flags |= TraceFlags.RANDOM_TRACE_ID
        span_id = self._ids.generate_span_id()
        return NonRecordingSpan(
            SpanContext(trace_id, span_id, False, TraceFlags(flags), sampling.trace_state)
        )

    @contextmanager  # the API's decorator is private (_agnosticcontextmanager): same behaviour
    def start_as_current_span(  # type: ignore[override]  # noqa: PLR0917
        self,
        name: str,
        context: otel_context.Context | None = None,
        kind: SpanKind = SpanKind.INTERNAL,
        attributes: Attributes = None,
        links: Sequence[Link] | None = (),
        start_time: int | None = None,
        record_exception: bool = True,
        set_status_on_exception: bool = True,
        end_on_exit: bool = True,
    ) -> Iterator[trace.Span]:
        span = self.start_span(name, context, kind, attributes, links)
        with trace.use_span(span, end_on_exit=end_on_exit) as current:
            yield current


def current_trace_id() -> int | None:
    """The trace id of the active span, or ``None`` outside a sampled span."""
    span_context = trace.get_current_span().get_span_context()
    return (
        span_context.trace_id
        if span_context.is_valid and span_context.trace_flags.sampled
        else None
    )


class ServerSpanMiddleware:
    """ASGI middleware: one SERVER span per HTTP request, continuing ``traceparent``."""

    def __init__(self, app: ASGIApp, tracer: trace.Tracer, skip_paths: frozenset[str]) -> None:
        self.app = app
        self.tracer = tracer
        self.skip_paths = skip_paths

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope["path"] in self.skip_paths:
            await self.app(scope, receive, send)
            return
        carrier = request_headers(scope)
        parent = _PROPAGATOR.extract(carrier)
        method = scope["method"]
        attributes: dict[str, Any] = {
            "http.request.method": method,
            "url.path": scope["path"],
            "url.scheme": scope.get("scheme", "http"),
        }
        if server := scope.get("server"):
            attributes["server.address"], attributes["server.port"] = server[0], server[1]
        if client := scope.get("client"):
            attributes["client.address"] = client[0]
        if agent := carrier.get("user-agent"):
            attributes["user_agent.original"] = agent
        # start_span and attach by hand: start_as_current_span's two context managers cost
        # as much as the span (BENCHMARKS.md, "Gateway overhead").
        span = self.tracer.start_span(
            method, context=parent, kind=SpanKind.SERVER, attributes=attributes
        )
        token = otel_context.attach(trace.set_span_in_context(span, parent))
        try:
            if span.is_recording():
                await self._serve_recorded(span, method, scope, receive, send)
            else:  # ids only (no exporter, or not sampled): nothing to write on the span
                await self.app(scope, receive, send)
        finally:
            span.end()
            otel_context.detach(token)

    async def _serve_recorded(
        self, span: trace.Span, method: str, scope: Any, receive: Any, send: Any
    ) -> None:
        """The app under a recording span, whose closing attributes say how it went."""
        status_holder: dict[str, int] = {}

        async def send_with_status(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                status_holder["code"] = message["status"]
            await send(message)

        raised = False
        try:
            await self.app(scope, receive, send_with_status)
        except BaseException as exc:  # as start_as_current_span would record it
            span.record_exception(exc)
            span.set_status(Status(StatusCode.ERROR, f"{type(exc).__name__}: {exc}"))
            raised = True
            raise
        finally:
            code = status_holder.get("code", 500)
            closing: dict[str, Any] = {"http.response.status_code": code}
            route = _route_template(scope)
            if route:
                closing["http.route"] = route
                span.update_name(f"{method} {route}")
            if code >= 500:
                closing["error.type"] = str(code)
                if not raised:  # else the status says which exception
                    span.set_status(Status(StatusCode.ERROR))
            span.set_attributes(closing)


_HEADERS_KEY = "driftgate.request_headers"


def request_headers(scope: dict[str, Any]) -> dict[str, str]:
    """The request's headers as a dict (names lower-case, as ASGI gives them; the last of a
    repeated header wins), decoded once per request and kept in the scope for the next
    reader (the span middleware, then the gateway's inference endpoint)."""
    headers: dict[str, str] | None = scope.get(_HEADERS_KEY)
    if headers is None:
        headers = {
            name.decode("latin-1"): value.decode("latin-1") for name, value in scope["headers"]
        }
        scope[_HEADERS_KEY] = headers
    return headers


def _route_template(scope: dict[str, Any]) -> str | None:
    """The template of the path that matched (``/v2/models/{model}/infer``), as semconv wants.

    Litestar records it in the scope; a handler with several paths must not be named after
    one of the others.
    """
    template = scope.get("path_template")
    return str(template) if template else None

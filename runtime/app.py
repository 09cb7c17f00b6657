"""The runtime's HTTP app: ``create_app(settings)`` is the only way to build it.

Everything app-wide (repository, predictor, metrics registry, tracer) is created here and
lives on ``app.state.runtime``; nothing is created at import time, so two apps can run in
one process. Routes per dialect live in ``runtime.routes``. Every error a client can cause
is an ``InferenceServerError`` and renders as ``{"error": "..."}`` with its status; any
other exception is logged and answers a 500 without a stack trace.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

from litestar import Litestar, Response
from litestar.datastructures import State
from litestar.exceptions import HTTPException
from litestar.middleware import DefineMiddleware
from litestar.openapi import OpenAPIConfig
from litestar.openapi.plugins import SwaggerRenderPlugin
from opentelemetry.sdk.trace.export import SpanExporter

from monitoring.in_flight import InFlightCount, RequestsInFlight
from monitoring.log_queue import flush_queued_logs
from monitoring.metrics import ModelStateCollector, RuntimeMetrics, new_registry
from monitoring.slow_clients import guarded_protocol
from monitoring.tracing import ServerSpanMiddleware, build_tracer_provider
from runtime.draining import log_cut_off
from runtime.errors import InferenceServerError, ModelNotReady, ServiceOverloaded
from runtime.predictor import Predictor
from runtime.refusal_log import RefusalLog
from runtime.repository import ModelRepository
from runtime.routes import ROUTE_HANDLERS
from runtime.routes.state import AnyRequest, RuntimeState, runtime_state
from runtime.settings import RuntimeSettings

log = logging.getLogger("driftgate.runtime")

_UNTRACED_PATHS = frozenset({"/metrics", "/v2/health/live", "/v2/health/ready"})


def create_app(settings: RuntimeSettings, span_exporter: SpanExporter | None = None) -> Litestar:
    registry = new_registry()
    metrics = RuntimeMetrics(registry)
    repository = ModelRepository(settings.repository, metrics)
    registry.register(ModelStateCollector(repository.readiness))
    tracer_provider = build_tracer_provider(settings.service_name, span_exporter)
    tracer = tracer_provider.get_tracer("driftgate.runtime")
    in_flight = InFlightCount()
    state = RuntimeState(
        settings=settings,
        repository=repository,
        predictor=Predictor(
            metrics,
            tracer,
            settings.inference_threads,
            settings.inline_inference_max_s,
            settings.max_waiting_calls,
            max_waiting_explanations=settings.max_waiting_explanations,
        ),
        metrics=metrics,
        registry=registry,
        tracer=tracer,
    )

    @asynccontextmanager
    async def lifespan(_: Litestar) -> AsyncIterator[None]:
        # Load in a thread: the server answers /v2/health/live (and 503 on ready) meanwhile.
        initial = asyncio.get_running_loop().run_in_executor(None, repository.scan)
        repository.start_polling(settings.poll_interval_s)
        try:
            yield
        finally:
            log_cut_off(in_flight, settings.shutdown_timeout_s)  # after uvicorn's grace period
            await initial  # never close the repository under a scan that is still loading
            repository.close()
            state.predictor.close()
            tracer_provider.shutdown()
            await flush_queued_logs()  # before uvicorn's SIGTERM ends the process

    return Litestar(
        route_handlers=ROUTE_HANDLERS,
        lifespan=[lifespan],
        state=_app_state(state),
        exception_handlers={
            InferenceServerError: _inference_errors(
                RefusalLog(log),
                RefusalLog(
                    log,
                    why="as the model version is not ready",
                    counted_in="driftgate_runtime_requests_total with code 503; the load in "
                    "driftgate_model_loads_total",
                ),
            ),
            HTTPException: _http_error,
            Exception: _unexpected_error,
        },
        middleware=[
            DefineMiddleware(RequestsInFlight, count=in_flight),
            DefineMiddleware(ServerSpanMiddleware, tracer=tracer, skip_paths=_UNTRACED_PATHS),
        ],
        request_max_body_size=settings.max_body_bytes,
        openapi_config=OpenAPIConfig(
            title="driftgate runtime",
            version="0.1.0",
            description="Open Inference Protocol v2, TF-Serving REST and the simple eval API.",
            path="/docs",
            render_plugins=[SwaggerRenderPlugin()],
        ),
        debug=False,
    )


def http_protocol(app: Litestar) -> type[asyncio.Protocol]:
    """uvicorn's ``http=`` for ``app``: clients slower than ``client_timeout_s`` cut off,
    malformed requests refused in JSON."""
    state: RuntimeState = app.state.runtime
    metrics = state.metrics
    return guarded_protocol(
        state.settings.client_timeout_s,
        lambda phase: metrics.client_timeouts.labels(phase).inc(),
        metrics.malformed_requests.inc,
    )


def _app_state(state: RuntimeState) -> State:
    return State({"runtime": state})


def _inference_errors(
    overloaded: RefusalLog, not_ready: RefusalLog
) -> Callable[[AnyRequest, InferenceServerError], Response[dict[str, str]]]:
    """The handler of every ``InferenceServerError``: its status and message, in JSON. An
    overload refusal is expected under load, and one for a version still loading while it
    loads: each a rate-limited WARNING, not an ERROR per request."""

    def handle(_: AnyRequest, exc: InferenceServerError) -> Response[dict[str, str]]:
        if isinstance(exc, ServiceOverloaded):
            overloaded.refused(exc.message)
        elif isinstance(exc, ModelNotReady):
            not_ready.refused(exc.message)
        elif exc.status_code >= 500:
            log.error("%s", exc.message)
        return Response(
            {"error": exc.message}, status_code=exc.status_code, headers=exc.served_headers
        )

    return handle


#: Paths only the gateway answers: a replica's 404 for them says where to go instead.
GATEWAY_ONLY_PATHS = ("/admin/", "/v1/feedback", "/reports")


def _http_error(request: AnyRequest, exc: HTTPException) -> Response[dict[str, str]]:
    message = exc.detail or "request failed"
    headers = exc.headers
    if exc.status_code == 405 and message == "Method Not Allowed":  # Litestar's own words
        path = request.url.path
        hint = ""
        if path.startswith("/v1/models/") and path.endswith(":predict"):
            # The status GET shares the path pattern, but GET on :predict is a 405 too.
            others = {k: v for k, v in (headers or {}).items() if k.lower() != "allow"}
            headers = {**others, "Allow": "OPTIONS, POST"}
            allowed = ["POST"]
        else:
            listed = next((v for k, v in (headers or {}).items() if k.lower() == "allow"), "")
            allowed = [m.strip() for m in listed.split(",") if m.strip() not in ("", "OPTIONS")]
            if path.endswith(":predict"):  # /v2/models/m:predict reads as model "m:predict"
                hint = (
                    " (`:predict` is TF-Serving's, under /v1/models/; the Open Inference "
                    "Protocol predicts with POST /v2/models/{model}/infer)"
                )
        use = f"; use {' or '.join(allowed)}" if allowed and not hint else ""
        message = f"method {request.method} is not allowed on {path}{use}{hint}"
    elif exc.status_code == 413:  # Litestar's own limit (a body without Content-Length)
        limit = runtime_state(request).settings.max_body_bytes
        message = f"request body too large: the limit is {limit} bytes"
    elif exc.status_code == 404 and request.url.path.startswith(GATEWAY_ONLY_PATHS):
        message = (
            f"{request.url.path} is the gateway's, and this is a runtime replica: send it to "
            "the gateway (port 8000 under `driftgate up`)"
        )
    return Response({"error": message}, status_code=exc.status_code, headers=headers)


def _unexpected_error(request: AnyRequest, exc: Exception) -> Response[dict[str, str]]:
    log.exception("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
    return Response({"error": "internal server error; see the runtime log"}, status_code=500)

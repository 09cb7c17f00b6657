"""The gateway's HTTP app: ``create_app(settings)`` builds everything it owns.

Inference requests are answered by ``gateway.inference`` as plain ASGI; the Litestar app
behind it serves the rest (metadata, admin, feedback, reports, health, metrics). The
gateway answers Open Inference Protocol server metadata (``GET /v2``) and health itself;
model metadata and readiness come from a replica (``gateway.proxy``).

App-wide resources (upstream connection pool, replica set, route table, metrics
registry, tracer, health checker) are created here and live on ``app.state.gateway``.
Errors render as ``{"error": "..."}``: auth failures as 401/403 with
``WWW-Authenticate``, routing failures with their status, anything unexpected as a
logged 500 without a stack trace.

On SIGTERM uvicorn waits for the requests in flight for at most
``listen.shutdown_timeout_s``, then cancels those still running; the lifespan's end says
how many it cut off (``monitoring.in_flight``), as the runtime does.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import gc
import importlib.metadata
import logging
from collections.abc import AsyncIterator, Callable, Coroutine
from contextlib import asynccontextmanager
from typing import Any

import httpx
from litestar import Litestar, MediaType, Response, get, route
from litestar.datastructures import State
from litestar.exceptions import HTTPException
from opentelemetry.sdk.trace.export import SpanExporter
from prometheus_client import CollectorRegistry

from gateway import admin, feedback, proxy, reports
from gateway.auth import AuthError, TokenVerifier
from gateway.balancer import ReplicaSet
from gateway.canary import CanaryController
from gateway.canary_share import SharedWindows
from gateway.canary_verdict import drift_checks_from, no_drift_checks
from gateway.discovery import ReplicaDiscovery
from gateway.dispatcher import Dispatcher, ProxyRequest
from gateway.errors import GatewayError, error_reply
from gateway.health import HealthChecker
from gateway.inference import InferenceEndpoint, body_too_large
from gateway.key_refresh import KeyRefresher
from gateway.lease import FileLease
from gateway.planner import ShadowPlan
from gateway.recording import Recorder
from gateway.route_table import RouteTable
from gateway.route_watch import RouteFileWatcher
from gateway.settings import GatewaySettings
from gateway.shadow import ShadowObserver, ShadowRunner
from gateway.state import AnyRequest, GatewayState, gateway_state
from gateway.upstream import UpstreamResponse, make_upstream
from monitoring.gateway_metrics import GatewayMetrics, ReplicaCollector, ShadowAgreementCollector
from monitoring.in_flight import InFlightCount, RequestsInFlight, log_cut_off
from monitoring.job_results import JobResultsCollector, latest_reader
from monitoring.jobs import JobScheduler
from monitoring.log_jobs import schedule_log_upkeep
from monitoring.log_queue import flush_queued_logs
from monitoring.metrics import new_registry, render_metrics
from monitoring.prediction_log import PredictionLogWriter
from monitoring.slow_clients import guarded_protocol
from monitoring.tracing import ServerSpanMiddleware, build_tracer_provider

log = logging.getLogger("driftgate.gateway")
_UNTRACED_PATHS = frozenset({"/metrics", "/v2/health/live", "/v2/health/ready"})


def create_app(
    settings: GatewaySettings,
    span_exporter: SpanExporter | None = None,
    transport: httpx.AsyncBaseTransport | None = None,
) -> GatewayApp:
    # httpx logs every upstream call at INFO: thousands of lines a second under load.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    registry = new_registry()
    metrics = GatewayMetrics(registry)
    tracer_provider = build_tracer_provider(settings.service_name, span_exporter)
    tracer = tracer_provider.get_tracer("driftgate.gateway")
    replicas = ReplicaSet(settings.replicas, settings.ejection)
    upstream = make_upstream(transport)
    dispatcher = Dispatcher(replicas, upstream, metrics, tracer)
    verifier = _verifier(settings)
    state = GatewayState(
        settings=settings,
        routes=RouteTable(settings.routes, settings.routes_dir),
        dispatcher=dispatcher,
        shadows=ShadowRunner(dispatcher, tracer),
        verifier=verifier,
        metrics=metrics,
        registry=registry,
        tracer=tracer,
    )
    state.recorder = _recorder(settings, registry)
    if state.recorder is not None:
        state.shadows.on_answer = _shadow_recorder(state)
    else:
        log.warning("the prediction log is off (no `log:` section in the configuration)")
    registry.register(ShadowAgreementCollector(metrics.shadow_comparisons))
    registry.register(
        ReplicaCollector(
            lambda: (
                (s.url, s.healthy, s.ejected, s.outstanding)
                for s in replicas.snapshot(dispatcher.clock())
            )
        )
    )
    health = HealthChecker(replicas, upstream, settings.health_check)
    discovery = state.discovery = (
        ReplicaDiscovery(
            settings.discovery,
            replicas=replicas,
            health=health,
            upstream=upstream,
            metrics=metrics,
            tracer=tracer,
        )
        if settings.discovery is not None
        else None
    )
    canary = state.canary = CanaryController(
        state.routes,
        state.canary_stats,
        metrics,
        tracer,
        drift_checks=(
            drift_checks_from(latest_reader(settings.log.store, "drift"))
            if settings.log is not None
            else no_drift_checks
        ),
        lease=FileLease(settings.routes_dir),
        shared=SharedWindows(settings.routes_dir),
        on_change=state.forget_unused_breakers,
    )
    key_refresher = (
        KeyRefresher(verifier, metrics)
        if verifier is not None and settings.auth.key_source is not None
        else None
    )
    route_watcher = state.route_watcher = (
        RouteFileWatcher(state.routes, metrics, tracer, on_change=state.forget_unused_breakers)
        if settings.routes_dir is not None
        else None
    )
    jobs = JobScheduler(registry, tracer)
    if settings.log is not None:
        schedule_log_upkeep(jobs, settings.log.store, settings.log.writer)
        # Drift scores and feature importance, read from the jobs' latest results.
        registry.register(JobResultsCollector(settings.log.store))
    in_flight = InFlightCount()

    @asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        app.state.health = health
        if state.recorder is not None:
            state.recorder.start()
            jobs.start()
        if discovery is not None:
            await discovery.refresh()
        await health.check_all()
        try:
            async with _background(
                health.run,
                canary.run,
                discovery.run if discovery is not None else None,
                key_refresher.run if key_refresher is not None else None,
                route_watcher.run if route_watcher is not None else None,
            ):
                yield
        finally:
            # After uvicorn's grace period: what it cancelled, or has yet to see cancelled.
            log_cut_off(log, in_flight, settings.shutdown_timeout_s, "listen.shutdown_timeout_s")
            await asyncio.to_thread(jobs.stop)
            await state.shadows.drain()
            if state.recorder is not None:  # SIGTERM: everything recorded reaches the store
                await asyncio.to_thread(state.recorder.close)
            await upstream.close()
            tracer_provider.shutdown()
            await flush_queued_logs()  # before uvicorn's SIGTERM ends the process

    web = Litestar(
        route_handlers=[
            *proxy.ROUTES,
            *admin.ROUTES,
            *feedback.ROUTES,
            *reports.ROUTES,
            server_metadata,
            live,
            ready,
            metrics_endpoint,
        ],
        lifespan=[lifespan],
        state=State({"gateway": state}),
        exception_handlers={
            AuthError: _error,
            GatewayError: _error,
            HTTPException: _http_error,
            Exception: _error,
        },
        request_max_body_size=settings.max_body_bytes,
        debug=False,
    )
    return GatewayApp(web, state, in_flight)


class GatewayApp:
    """The gateway's ASGI app: the inference endpoint first, the Litestar app behind it.

    One SERVER span (``ServerSpanMiddleware``) covers both, so every traced request looks
    the same whichever side answered it; ``in_flight`` counts the requests of both.
    """

    def __init__(self, web: Litestar, state: GatewayState, in_flight: InFlightCount) -> None:
        self.web = web
        self.state = state
        endpoint = InferenceEndpoint(web, state, state.settings.max_body_bytes)
        traced = ServerSpanMiddleware(endpoint, state.tracer, _UNTRACED_PATHS)
        self._asgi = RequestsInFlight(traced, in_flight)

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        await self._asgi(scope, receive, send)

    def http_protocol(self) -> type[asyncio.Protocol]:
        """uvicorn's ``http=``: clients slower than ``listen.client_timeout_s`` cut off,
        malformed requests refused in JSON."""
        metrics = self.state.metrics
        return guarded_protocol(
            self.state.settings.client_timeout_s,
            lambda phase: metrics.client_timeouts.labels(phase).inc(),
            metrics.malformed_requests.inc,
        )


def freeze_heap() -> None:
    """Move everything built so far out of the garbage collector's later full passes.

    For the process that serves the app, once ``create_app`` returned: its modules and app
    live as long as the process, and without this generation 2 collections walked them every
    few seconds under load (measured: 65-90 ms pauses). The runtime does the same after
    each model load (``runtime.heap``).
    """
    gc.collect()
    gc.freeze()


#: A task that runs until cancelled (health checks, canary ticks, discovery, key refresh).
BackgroundLoop = Callable[[], Coroutine[Any, Any, None]]


@asynccontextmanager
async def _background(*loops: BackgroundLoop | None) -> AsyncIterator[None]:
    """Runs each loop as a task while the app serves; cancels and awaits them at the end."""
    tasks = [asyncio.create_task(loop()) for loop in loops if loop is not None]
    try:
        yield
    finally:
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task


def _shadow_recorder(state: GatewayState) -> ShadowObserver:
    """Records a shadow's answer to the prediction log, as role ``shadow``."""

    def record(
        shadow: ShadowPlan,
        request: ProxyRequest,
        response: UpstreamResponse,
        replica: str,
        started: float,
    ) -> None:
        state.record(
            request,
            response,
            arm="",
            role="shadow",
            model=shadow.target.model,
            version=response.headers.get("x-model-version", shadow.target.version or ""),
            replica=replica,
            started=started,
            shadowed=True,
        )

    return record


def _verifier(settings: GatewaySettings) -> TokenVerifier | None:
    """The token verifier; None, said loudly, where auth is switched off."""
    if settings.auth.enabled:
        return TokenVerifier(settings.auth)
    log.warning(
        "AUTH IS DISABLED (auth.enabled: false): anyone who can reach port %d "
        "can call every model and the admin API",
        settings.port,
    )
    return None


def _recorder(settings: GatewaySettings, registry: CollectorRegistry) -> Recorder | None:
    if settings.log is None:
        return None
    writer = PredictionLogWriter(settings.log.store, settings.log.writer, registry)
    return Recorder(
        writer,
        settings.log.sampling,
        registry,
        max_queue=settings.log.max_queue,
        keep_image_bytes=settings.log.keep_image_bytes,
        max_body_bytes=settings.max_body_bytes,
    )


#: ``GET /v2`` names the gateway, not a replica: a client can tell which one it reached.
SERVER_NAME = "driftgate-gateway"
#: Open Inference Protocol extensions that work through the gateway: binary tensor data
#: (the body is forwarded as sent and ``Inference-Header-Content-Length`` both ways). Of
#: Triton's others (model repository, shared memory, statistics, trace, logging...) the
#: gateway serves none, and a replica's ``GET /v2`` is never passed through as its own.
SERVER_EXTENSIONS = ("binary_tensor_data",)


@route("/v2", http_method=["GET", "HEAD"], sync_to_thread=False)
def server_metadata() -> dict[str, Any]:
    """Open Inference Protocol server metadata, the gateway's own (tritonclient's
    ``get_server_metadata()``, KServe clients' server checks). No token needed, as for
    health: it says nothing about models or replicas, and asks none."""
    return {"name": SERVER_NAME, "version": server_version(), "extensions": [*SERVER_EXTENSIONS]}


@functools.cache
def server_version() -> str:
    """The installed driftgate's version (``pyproject.toml``), as ``GET /v2`` names it."""
    try:
        return importlib.metadata.version("driftgate")
    except importlib.metadata.PackageNotFoundError:  # run from a source tree, not installed
        return "unknown"


# HEAD too: load balancers probe with it (uvicorn sends no body).
@route("/v2/health/live", http_method=["GET", "HEAD"], sync_to_thread=False)
def live() -> dict[str, bool]:
    return {"live": True}


@route("/v2/health/ready", http_method=["GET", "HEAD"], sync_to_thread=False)
def ready(request: AnyRequest) -> Response[dict[str, bool]]:
    """Ready when at least one runtime replica passes its health check."""
    is_ready = request.app.state.health.any_healthy()
    return Response({"ready": is_ready}, status_code=200 if is_ready else 503)


@get("/metrics", include_in_schema=False, sync_to_thread=False, media_type=MediaType.TEXT)
def metrics_endpoint(request: AnyRequest) -> Response[bytes]:
    body, content_type = render_metrics(
        gateway_state(request).registry, request.headers.get("accept")
    )
    return Response(body, media_type=content_type)


def _error(request: AnyRequest, exc: Exception) -> Response[dict[str, str]]:
    """Auth failures, the gateway's own errors and anything unexpected (``error_reply``)."""
    status, headers, message = error_reply(exc, f"{request.method} {request.url.path}")
    return Response({"error": message}, status_code=status, headers=headers)


def _http_error(request: AnyRequest, exc: HTTPException) -> Response[dict[str, str]]:
    if exc.status_code == 413:  # worded as the inference endpoint words it: size and limit
        limit = gateway_state(request).settings.max_body_bytes
        return _error(request, body_too_large(limit, _declared_length(request, limit)))
    message = exc.detail or "request failed"
    return Response({"error": message}, status_code=exc.status_code, headers=exc.headers)


def _declared_length(request: AnyRequest, limit: int) -> int | None:
    """The body size Content-Length announced, when it is what passed ``limit``."""
    declared = request.headers.get("content-length", "")
    return int(declared) if declared.isdecimal() and int(declared) > limit else None

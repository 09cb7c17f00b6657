"""What the gateway's handlers share: settings, routes, dispatcher, auth, metrics, tracer."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from litestar import Request
from opentelemetry import trace
from prometheus_client import CollectorRegistry

from gateway.auth import AuthError, Principal, TokenVerifier, require
from gateway.canary import CanaryController, CanaryStats
from gateway.circuit import CircuitState
from gateway.discovery import ReplicaDiscovery
from gateway.dispatcher import Dispatcher, ProxyRequest
from gateway.exchange_records import Exchange
from gateway.policy import RoutePolicy, Target
from gateway.recording import Recorder, now_utc
from gateway.route_table import RouteTable
from gateway.route_watch import RouteFileWatcher
from gateway.settings import GatewaySettings
from gateway.shadow import ShadowRunner
from gateway.upstream import UpstreamResponse
from monitoring.gateway_metrics import GatewayMetrics
from monitoring.tracing import current_trace_id

AnyRequest = Request[Any, Any, Any]

log = logging.getLogger("driftgate.gateway.routes")

#: The route label of a name no route configures and no runtime served (and its model's).
UNKNOWN_ROUTE = "_unknown"


#: Analyst queries one gateway runs at once: each holds a thread and up to 30 s of CPU.
SQL_TURNS = 2
#: Large feedback posts one gateway decodes and queues in worker threads at once; more
#: wait for a turn on the event loop, so a burst of labels cannot take every thread of the
#: pool (SQL queries and route writes use it too).
FEEDBACK_TURNS = 2


@dataclass
class GatewayState:
    settings: GatewaySettings
    routes: RouteTable
    dispatcher: Dispatcher
    shadows: ShadowRunner
    verifier: TokenVerifier | None
    metrics: GatewayMetrics
    registry: CollectorRegistry
    tracer: trace.Tracer
    recorder: Recorder | None = None
    #: Request outcomes of canary routes' arms, read by ``gateway.canary.CanaryController``.
    canary_stats: CanaryStats = field(default_factory=CanaryStats)
    canary: CanaryController | None = None
    #: Finds the replicas by DNS when gateway.yaml says ``replicas: {dns: ...}``.
    discovery: ReplicaDiscovery | None = None
    #: Reads ``routes_dir`` back (every 2 s, and before each admin read); None without one.
    route_watcher: RouteFileWatcher | None = None
    #: Model names some runtime answered for (``X-Model-Name``): bounded by the
    #: repositories, so they may be metric label values, unlike any name a client sends.
    served_models: set[str] = field(default_factory=set)
    #: Turns to run an analyst's ``POST /admin/sql`` (``gateway.feedback``).
    sql_turns: asyncio.Semaphore = field(default_factory=lambda: asyncio.Semaphore(SQL_TURNS))
    #: Turns to handle a large ``POST /v1/feedback`` in a worker thread (``gateway.feedback``).
    feedback_turns: asyncio.Semaphore = field(
        default_factory=lambda: asyncio.Semaphore(FEEDBACK_TURNS)
    )
    #: The routes the circuit breakers were last checked against (``forget_unused_breakers``).
    _breakers_checked: Mapping[str, RoutePolicy] = field(init=False)

    def __post_init__(self) -> None:
        self._breakers_checked = self.routes.configured()
        # A request begun on a route's previous policy must not bring back the breakers
        # ``forget_unused_breakers`` forgot (``Dispatcher.route_breaker``).
        self.dispatcher.policy_now = self.routes.get

    def forget_unused_breakers(self) -> None:
        """Forget the circuit breakers (the routes' and the shadows') of targets that the
        routes changed since the last call name no more: a route replaced, removed (its
        default policy names its model alone) or without breakers now. Those of targets
        still named keep their state and take the route's new settings, as do the open (or
        probing) ones of versions of the primary's model that request URLs name
        (``gateway.planner``): a change that leaves such a version alone must not close its
        breaker. Every breaker of the routes that did not change is left alone. On the
        event loop, where the breakers are used: cheap when nothing changed (the table's
        snapshot is the same object)."""
        routes = self.routes.configured()
        before, self._breakers_checked = self._breakers_checked, routes
        if routes is before:
            return
        changed = {n for n in before.keys() | routes.keys() if before.get(n) is not routes.get(n)}

        def settings_of(route: str, target: Target) -> tuple[int, float] | None:
            policy = self.routes.get(route)
            settings = policy.circuit_breaker
            if settings is None or target not in policy.named_targets:
                return None
            return settings.failures, settings.open_s

        now = self.dispatcher.clock()
        tripped = {
            (route, target)
            for route, target, state in self.dispatcher.breaker_states(now)
            if state != CircuitState.CLOSED
        }

        def request_settings_of(route: str, target: Target) -> tuple[int, float] | None:
            """A request's URL may name any version of the primary's model: while the
            primary keeps its model, such a version's breaker that is open (or probing) is
            kept, so that its requests do not go to a target known to be failing."""
            policy = self.routes.get(route)
            settings = policy.circuit_breaker
            url_named = target.version is not None and target.model == policy.primary.model
            if settings is not None and url_named and (route, target) in tripped:
                return settings.failures, settings.open_s
            return settings_of(route, target)

        self.dispatcher.forget_breakers(changed, request_settings_of)
        self.shadows.forget_breakers(changed, settings_of)

    async def read_routes_dir(self) -> None:
        """Take what ``routes_dir`` holds now, as the watcher does every 2 seconds.

        For the admin API's reads: a ``PUT``'s ``If-Match`` is checked against the folder,
        so the ETag a ``GET`` answers must be the folder's too, a change that another
        gateway sharing it wrote a moment ago included. A folder that cannot be read leaves
        the routes in use, which the read answers (the watcher logs it again at its turn).
        """
        if self.route_watcher is None:
            return
        try:
            await self.route_watcher.reload()
        except OSError as exc:
            log.error("could not read the routes folder %s: %s", self.routes.routes_dir, exc)

    def route_label(self, route: str, answered_by: str = "") -> str:
        """``route`` as a metric label value: the name when gateway.yaml configures it or a
        runtime has served it (``answered_by`` a model of that name), else ``_unknown``, so
        names clients make up add no series. A served name stays one: its requests during
        an outage keep their label."""
        if answered_by == route:
            self.served_models.add(route)
        if route in self.served_models or self.routes.is_configured(route):
            return route
        return UNKNOWN_ROUTE

    def record(
        self,
        request: ProxyRequest,
        response: UpstreamResponse,
        *,
        arm: str,
        role: str,
        model: str,
        version: str,
        replica: str,
        started: float,
        shadowed: bool,
    ) -> None:
        """Offer one answered exchange to the prediction log (sampled, never blocking)."""
        if self.recorder is None:
            return
        trace_id = current_trace_id()
        self.recorder.record(
            self.route_label(request.route, answered_by=model),
            Exchange(
                request_id=request.request_id,
                timestamp=now_utc(),
                route=request.route,
                arm=arm,
                role=role,
                dialect=request.path.dialect,
                model=model,
                version=version,
                replica=replica,
                status=response.status,
                latency_s=time.perf_counter() - started,
                trace_id=format(trace_id, "032x") if trace_id else None,
                request_body=request.body,
                request_headers=request.client_headers,
                response_body=response.body,
                response_headers={k.lower(): v for k, v in response.headers.items()},
                subject=request.subject,
            ),
            shadowed=shadowed,
        )

    def authorize(
        self, request: AnyRequest, scope: str, model: str | None = None
    ) -> Principal | None:
        """The caller's principal, checked for ``scope``; None when auth is disabled."""
        return self.authorize_header(request.headers.get("authorization"), scope, model)

    def authorize_header(
        self, authorization: str | None, scope: str, model: str | None = None
    ) -> Principal | None:
        """``authorize`` for the value of an ``Authorization`` header."""
        if self.verifier is None:
            return None
        with self.tracer.start_as_current_span("auth") as span:
            try:
                principal = self.verifier.verify(authorization)
                require(principal, scope, model)
            except AuthError as exc:
                span.set_attribute("error.type", type(exc).__name__)
                self.metrics.auth_failures.labels(str(exc.status_code)).inc()
                raise
            span.set_attribute("enduser.id", principal.subject)
            return principal


def gateway_state(request: AnyRequest) -> GatewayState:
    state: GatewayState = request.app.state.gateway
    return state

"""What the gateway's handlers share: settings, routes, dispatcher, auth, metrics, tracer."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from litestar import Request
from opentelemetry import trace
from prometheus_client import CollectorRegistry

from gateway.auth import AuthError, Principal, TokenVerifier, require
from gateway.dispatcher import Dispatcher
from gateway.route_table import RouteTable
from gateway.settings import GatewaySettings
from gateway.shadow import ShadowRunner
from monitoring.gateway_metrics import GatewayMetrics

AnyRequest = Request[Any, Any, Any]


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

    def authorize(
        self, request: AnyRequest, scope: str, model: str | None = None
    ) -> Principal | None:
        """The caller's principal, checked for ``scope``; None when auth is disabled."""
        if self.verifier is None:
            return None
        with self.tracer.start_as_current_span("auth") as span:
            try:
                principal = self.verifier.verify(request.headers.get("authorization"))
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

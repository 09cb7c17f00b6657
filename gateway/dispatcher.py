"""Carries out a routing plan: tries, retries, fallbacks and circuit breakers, with I/O.

``plan_route`` (pure) decided the answering target, its fallbacks and the shadows; the
dispatcher tries the targets in order within the route's total budget. For one target it
picks the least-loaded replica and, on a connection error, timeout or 503, retries on
another replica (never on a 4xx). A target whose tries all fail, or that answers a 5xx,
counts against its circuit breaker and hands over to the next fallback. A 404 that names
no model version (``X-Model-Version`` absent) says the replica does not serve the target at
all (a route pointed at a version not deployed, or a model mistyped): like every 4xx it
is not retried, but it hands over to the next fallback, without counting against the
breaker; with no fallback left, the client gets that 404. Other 4xx are the client's
answer. Shadows run in ``gateway.shadow`` after the client has its answer.

Every upstream try is a CLIENT span (OpenTelemetry HTTP semantic conventions) carrying
``traceparent`` to the runtime, and a ``driftgate_upstream_duration_seconds`` sample.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from opentelemetry import trace
from opentelemetry.propagate import inject
from opentelemetry.trace import SpanKind, Status, StatusCode

from gateway.balancer import ReplicaSet
from gateway.circuit import CircuitBreaker, CircuitState, breaker_in, forget_breakers
from gateway.dialects import InferencePath
from gateway.errors import NoUpstream, UpstreamTimeout
from gateway.planner import Plan
from gateway.policy import RoutePolicy, Target
from gateway.upstream import Upstream, UpstreamResponse, UpstreamUnavailable
from monitoring.gateway_metrics import GatewayMetrics

_RETRYABLE_STATUS = 503
_REPLICA_FAILURE_STATUS = frozenset({502, 504})
#: With no ``X-Model-Version``: the replica serves no such model or version.
_NOT_SERVED_STATUS = 404


@dataclass(frozen=True)
class ProxyRequest:
    route: str
    #: ``route`` as a metric label value (``GatewayState.route_label``): bounded.
    route_label: str
    path: InferencePath
    request_id: str
    headers: Mapping[str, str]  # already filtered to what replicas may see
    body: bytes
    #: Every request header, lower-cased (for the prediction log; never forwarded).
    client_headers: Mapping[str, str] = field(default_factory=dict)
    #: The ``sub`` of the caller's verified token (for the prediction log); None when
    #: auth is off.
    subject: str | None = None


@dataclass
class ProxyResult:
    response: UpstreamResponse
    target: Target
    role: str  # primary | fallback
    replica: str
    fallback_reason: str | None = None
    #: Every target tried for this request, the one that answered last: shadows skip them.
    tried: tuple[Target, ...] = ()


@dataclass
class _TargetFailure:
    reason: str  # circuit_open | unavailable | timeout | status_5xx | not_served | no_replica
    message: str
    response: UpstreamResponse | None = None
    role: str = "primary"  # of the target that failed: primary | fallback


@dataclass
class Dispatcher:
    replicas: ReplicaSet
    upstream: Upstream
    metrics: GatewayMetrics
    tracer: trace.Tracer
    clock: Callable[[], float] = time.monotonic
    #: The route's policy now (``RouteTable.get``; ``GatewayState`` sets it): a breaker is
    #: kept only for a request whose policy is still that (``route_breaker``). None: always.
    policy_now: Callable[[str], RoutePolicy] | None = None
    _breakers: dict[tuple[str, Target], CircuitBreaker] = field(default_factory=dict)

    async def dispatch(self, policy: RoutePolicy, plan: Plan, request: ProxyRequest) -> ProxyResult:
        deadline = self.clock() + policy.timeout_s
        failures: list[_TargetFailure] = []
        tried: list[Target] = []
        for index, target in enumerate(plan.targets):
            role = "primary" if index == 0 else "fallback"
            breaker = self.route_breaker(self._breakers, request.route, policy, target)
            if breaker is not None and not breaker.allow(self.clock()):
                failures.append(
                    _TargetFailure("circuit_open", f"circuit open for {_describe(target)}")
                )
                continue
            tried.append(target)
            outcome = await self._try_target(policy, target, request, deadline, role)
            if isinstance(outcome, ProxyResult):
                outcome.tried = tuple(tried)
                if breaker is not None:
                    breaker.record_success(self.clock())
                if index:
                    planned = plan.targets[0]  # failures[0] is its failure
                    outcome.fallback_reason = failures[0].reason
                    self.metrics.fallbacks.labels(
                        request.route,
                        target.model,
                        failures[0].reason,
                        planned.model,
                        planned.version or "",
                    ).inc()
                return outcome
            # A target not served is no failure of a model: a client asking for a version
            # that does not exist must keep getting the 404 that says so, not an open circuit.
            outcome.role = role
            if breaker is not None:
                if outcome.reason == "not_served":
                    breaker.record_neither()
                else:
                    breaker.record_failure(self.clock())
            failures.append(outcome)
            if self.clock() >= deadline:
                break
        raise _give_up(request.route, failures, policy.timeout_s)

    async def _try_target(
        self,
        policy: RoutePolicy,
        target: Target,
        request: ProxyRequest,
        deadline: float,
        role: str,
    ) -> ProxyResult | _TargetFailure:
        tried: set[str] = set()
        failure = _TargetFailure("no_replica", "no runtime replica is available")
        for attempt in range(policy.retries + 1):
            remaining = deadline - self.clock()
            if remaining <= 0:
                return _TargetFailure(
                    "timeout", f"the route's {policy.timeout_s:g}s budget ran out"
                )
            replica = self.replicas.pick(tried, self.clock())
            if replica is None:
                return failure
            if attempt:
                self.metrics.upstream_retries.labels(request.route_label).inc()
            tried.add(replica)
            per_try = min(policy.per_try_timeout_s or remaining, remaining)
            try:
                response = await self.call(
                    replica, request, target, timeout_s=per_try, role=role, attempt=attempt
                )
            except UpstreamUnavailable as exc:
                self.replicas.record_failure(replica, self.clock())
                failure = _TargetFailure(
                    "timeout" if exc.kind == "timeout" else "unavailable", str(exc)
                )
                continue
            # 502/504 say the replica itself is sick; a 500 or a 503 "model not ready" is one
            # model's problem, and one shared pool must not eject replicas over it.
            if response.status in _REPLICA_FAILURE_STATUS:
                self.replicas.record_failure(replica, self.clock())
            else:
                self.replicas.record_success(replica)
            if response.status == _RETRYABLE_STATUS:
                failure = _TargetFailure(
                    "status_5xx", f"{_describe(target)} answered 503", response
                )
                continue
            if _not_served(response):  # a 4xx: never retried, but a fallback may answer
                return _TargetFailure(
                    "not_served", f"{_describe(target)} is not served (404)", response
                )
            if response.status >= 500:
                return _TargetFailure(
                    "status_5xx", f"{_describe(target)} answered {response.status}", response
                )
            return ProxyResult(response, target, role, replica)
        return failure

    async def call(
        self,
        replica: str,
        request: ProxyRequest,
        target: Target,
        *,
        timeout_s: float,
        role: str,
        attempt: int = 0,
    ) -> UpstreamResponse:
        """One HTTP call to one replica, as a CLIENT span, measured."""
        url = replica + request.path.for_target(target)
        host, port = _server_of(replica)
        attributes: dict[str, str | int] = {
            "http.request.method": "POST",
            "url.full": url,
            "server.address": host,
            "server.port": port,
            "driftgate.role": role,
            "driftgate.model.name": target.model,
            "driftgate.model.version": target.version or "",
        }
        if attempt:
            attributes["http.request.resend_count"] = attempt
        headers = {**request.headers, "x-request-id": request.request_id}
        # The span is never made current: nothing runs under it but the call, and attaching
        # and detaching a context costs as much as the span's attributes.
        span = self.tracer.start_span("POST", kind=SpanKind.CLIENT, attributes=attributes)
        inject(headers, context=trace.set_span_in_context(span))
        self.replicas.acquire(replica)
        started = time.perf_counter()
        outcome = "error"
        try:
            response = await self.upstream.send("POST", url, headers, request.body, timeout_s)
        except UpstreamUnavailable as exc:
            outcome = exc.kind
            span.set_attribute("error.type", exc.kind)
            span.set_status(Status(StatusCode.ERROR, str(exc)))
            raise
        except BaseException as exc:  # cancelled with the request, or a fault of ours
            span.set_attribute("error.type", type(exc).__qualname__)
            span.set_status(Status(StatusCode.ERROR, str(exc)))
            raise
        else:
            outcome = str(response.status)
            span.set_attribute("http.response.status_code", response.status)
            if response.status >= 500:
                span.set_attribute("error.type", str(response.status))
                span.set_status(Status(StatusCode.ERROR))
        finally:
            self.replicas.release(replica)
            self.metrics.observe_upstream(replica, role, outcome, time.perf_counter() - started)
            span.end()
        return response

    def circuit_open(self, route: str, target: Target) -> bool:
        """Whether ``target``'s breaker on ``route`` is open now (it refuses requests until
        ``open_s`` has passed). Asked for shadows: it takes no half-open probe, which is
        the route's own traffic's to take, and makes no breaker."""
        breaker = self._breakers.get((route, target))
        return breaker is not None and breaker.state_at(self.clock()) is CircuitState.OPEN

    def forget_breakers(
        self,
        routes: Collection[str],
        settings_of: Callable[[str, Target], tuple[int, float] | None],
    ) -> None:
        """See ``gateway.circuit.forget_breakers``: after ``routes`` changed."""
        forget_breakers(self._breakers, routes, settings_of)

    def breaker_states(self, now: float) -> list[tuple[str, Target, str]]:
        return [
            (route, target, breaker.state_at(now).value)
            for (route, target), breaker in self._breakers.items()
        ]

    def route_breaker(
        self,
        breakers: dict[tuple[str, Target], CircuitBreaker],
        route: str,
        policy: RoutePolicy,
        target: Target,
    ) -> CircuitBreaker | None:
        """``target``'s breaker on ``route`` in ``breakers`` (the dispatcher's or the
        shadows'), made with ``policy``'s settings if missing; None when it has none.

        A request reads its route's policy once, when it starts. One begun before the route
        changed, making a breaker after ``GatewayState.forget_unused_breakers`` ran, would
        keep it for good with the old settings, or for a target no longer named. So a
        missing breaker is kept only while ``policy`` is still the route's; otherwise the
        request gets one of its own, not kept. Only a miss asks: the common case is one
        dictionary look-up, as before."""
        settings = policy.circuit_breaker
        if settings is None:
            return None
        key = (route, target)
        breaker = breakers.get(key)
        if breaker is not None:
            return breaker
        if self.policy_now is not None:
            current = self.policy_now(route)
            if current is not policy and current != policy:
                return CircuitBreaker(settings.failures, settings.open_s)
        return breaker_in(breakers, key, settings.failures, settings.open_s)


@functools.lru_cache(maxsize=1024)
def _server_of(replica: str) -> tuple[str, int]:
    """``server.address`` and ``server.port`` of a replica URL (parsed once per replica)."""
    address = urlsplit(replica)
    return address.hostname or "", address.port or 80


def _not_served(response: UpstreamResponse) -> bool:
    """Whether the replica serves no such model or version: a 404 naming no version, where
    the runtime names the version of every refusal it made with a model version in hand."""
    return response.status == _NOT_SERVED_STATUS and not response.headers.get("x-model-version")


def _describe(target: Target) -> str:
    return f"model '{target.model}'" + (f" version {target.version}" if target.version else "")


def _give_up(route: str, failures: list[_TargetFailure], budget_s: float) -> Exception:
    """The client's answer when no target answered: the last real 5xx, else 503/504."""
    for failure in reversed(failures):
        if failure.response is not None and failure.response.status != _RETRYABLE_STATUS:
            return _UpstreamAnswer(failure.response, failure.role)
    detail = "; ".join(failure.message for failure in failures)
    if failures and all(f.reason == "timeout" for f in failures):
        return UpstreamTimeout(f"route '{route}': no answer within {budget_s:g}s ({detail})")
    return NoUpstream(
        f"route '{route}': no target could answer ({detail})", headers={"Retry-After": "1"}
    )


class _UpstreamAnswer(Exception):
    """The runtime's own error response, passed through to the client unchanged, and the
    role of the target that answered it (a fallback's 500 is no answer of the primary)."""

    def __init__(self, response: UpstreamResponse, role: str) -> None:
        super().__init__(response.status)
        self.response = response
        self.role = role


UpstreamAnswer = _UpstreamAnswer

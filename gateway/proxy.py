"""Inference through the gateway: the runtime's dialects and explain, routed by policy.

``answer`` serves one inference request that ``gateway.inference`` read off the wire; the
Litestar routes here serve model metadata and readiness from any healthy replica.

For each inference request: authenticate (scope ``predict`` or ``predict:<model>``), plan the route
(pure), dispatch (tries, retries, fallbacks), answer the client with the runtime's body
and headers saying who answered, then mirror to shadows in the background (not compared
when a fallback answered, and never to a target already tried). An explain
request (``gateway.dialects``) is authorised and routed the same way, but its answer is
not a prediction: it is neither offered to the prediction log nor mirrored to shadows.

Response headers: ``X-Request-ID`` (echoed or generated), ``X-Driftgate-Arm`` (the A/B
arm, ``primary`` without a split), ``X-Driftgate-Model`` / ``X-Driftgate-Version`` (the
model and version that actually answered), ``X-Driftgate-Role`` (``primary`` or
``fallback``) and, after a fallback, ``X-Driftgate-Fallback-Reason``.

A model or route name that no model can have (``gateway.policy``'s name rule) is an
unknown model, 404, and a version that is no valid name a 400, before any replica is
called: names from the URL go into the request line sent to the runtime.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import quote

from litestar import Response, get, post
from litestar.params import FromPath
from opentelemetry import trace

from gateway.dialects import InferencePath
from gateway.dispatcher import ProxyRequest, ProxyResult, UpstreamAnswer
from gateway.errors import BadGatewayRequest, NoUpstream, RouteNotFound
from gateway.planner import Plan, RequestContext, json_body_fields, plan_route
from gateway.policy_model import CANARY_ARM, STABLE_ARM, PolicyError, RoutePolicy, check_name
from gateway.state import UNKNOWN_ROUTE, AnyRequest, GatewayState, gateway_state
from gateway.upstream import FORWARDED_HEADERS, UpstreamResponse, UpstreamUnavailable
from monitoring.metrics import exemplar
from monitoring.tracing import current_trace_id

_PASSED_BACK = ("content-type", "inference-header-content-length")
#: The label (and log partition) of names that are neither configured nor served.
UNKNOWN_MODEL = UNKNOWN_ROUTE
CANARY_ARMS = frozenset({STABLE_ARM, CANARY_ARM})


@dataclass(frozen=True, slots=True)
class Inbound:
    """An inference request as the endpoint read it (``gateway.inference``)."""

    path: InferencePath
    request_id: str
    headers: Mapping[str, str]  # every request header, names lower-cased
    body: bytes


@dataclass(frozen=True, slots=True)
class Answer:
    """What the client gets: the runtime's answer and the gateway's own headers."""

    status: int
    headers: dict[str, str]  # content-type included
    body: bytes


async def answer(state: GatewayState, inbound: Inbound) -> Answer:
    """Authorise, plan, dispatch, record and mirror one inference request.

    Raises ``AuthError`` or ``GatewayError`` for what the gateway refuses or cannot route;
    the caller renders them (``gateway.errors.error_reply``).
    """
    path, request_id = inbound.path, inbound.request_id
    route = path.model
    started = time.perf_counter()
    arm, labels = "", {"model": "", "version": "", "role": "", "code": "500"}
    try:
        principal = state.authorize_header(inbound.headers.get("authorization"), "predict", route)
        subject = principal.subject if principal else None
        policy = _route_policy(state, route)
        context = RequestContext(
            route=route,
            request_id=request_id,
            subject=subject,
            headers=inbound.headers,
            body_field=json_body_fields(
                inbound.body,
                inbound.headers.get("content-encoding"),
                state.settings.max_body_bytes,
            ),
            version=path.version,
        )
        try:
            plan = plan_route(policy, context)
        except PolicyError as exc:
            raise BadGatewayRequest(str(exc)) from None
        arm = plan.arm or ""
        _describe_plan(route, plan)
        shadows = plan.shadows if path.predicts else ()
        proxied = ProxyRequest(
            route,
            state.route_label(route),
            path,
            request_id,
            {k: v for k, v in inbound.headers.items() if k in FORWARDED_HEADERS},
            inbound.body,
            inbound.headers,
            subject,
        )
        try:
            result = await state.dispatcher.dispatch(policy, plan, proxied)
        except UpstreamAnswer as upstream_error:
            response = upstream_error.response
            configured = state.routes.is_configured(route)
            labels.update(_confirmed(response, route if configured else "", upstream_error.role))
            if path.predicts:
                state.record(
                    proxied,
                    response,
                    arm=arm,
                    role=upstream_error.role,
                    model=labels["model"] or UNKNOWN_MODEL,
                    version=labels["version"],
                    replica="",
                    started=started,
                    shadowed=False,  # no target answered: nothing is mirrored
                )
            return _respond(response, {"X-Request-ID": request_id, "X-Driftgate-Arm": arm})
        planned = result.target.model if state.routes.is_configured(route) else ""
        labels.update(_confirmed(result.response, planned, result.role))
        # Only what was sent counts as shadowed: the log keeps such a request whole.
        shadowed = state.shadows.schedule(shadows, proxied, result, policy)
        if path.predicts:
            state.record(
                proxied,
                result.response,
                arm=arm,
                role=result.role,
                model=labels["model"] or UNKNOWN_MODEL,
                version=labels["version"],
                replica=result.replica,
                started=started,
                shadowed=shadowed,
            )
        return _respond(result.response, _driftgate_headers(request_id, arm, result))
    except Exception as exc:
        labels["code"] = str(getattr(exc, "status_code", 500))
        raise
    finally:
        _measure(state, path, arm, labels, started)


def _route_policy(state: GatewayState, route: str) -> RoutePolicy:
    """The route's policy; a name no route can have is an unknown model (404)."""
    try:
        return state.routes.get(route)
    except PolicyError as exc:
        raise RouteNotFound(f"unknown model: {exc}") from None


def _describe_plan(route: str, plan: Plan) -> None:
    """The routing decision, as attributes of the request's SERVER span."""
    span = trace.get_current_span()
    if span.is_recording():
        span.set_attributes(
            {
                "driftgate.route": route,
                "driftgate.arm": plan.arm or "",
                "driftgate.targets": [f"{t.model}:{t.version or ''}" for t in plan.targets],
            }
        )


def _answered(result: ProxyResult) -> dict[str, str]:
    headers = result.response.headers
    return {
        "model": headers.get("x-model-name", result.target.model),
        "version": headers.get("x-model-version", result.target.version or ""),
        "role": result.role,
        "code": str(result.response.status),
    }


def _confirmed(response: UpstreamResponse, planned_model: str, role: str) -> dict[str, str]:
    """Metric and log labels of an answer: the model and version the runtime names in it
    (it does for every model it knows, refusals included), else the model a configured
    route planned, else none. Never a name or version only the client gave: made-up names
    would each add a series and a log partition."""
    headers = response.headers
    return {
        "model": headers.get("x-model-name", planned_model),
        "version": headers.get("x-model-version", ""),
        "role": role,
        "code": str(response.status),
    }


def _driftgate_headers(request_id: str, arm: str, result: ProxyResult) -> dict[str, str]:
    answered = _answered(result)
    headers = {
        "X-Request-ID": request_id,
        "X-Driftgate-Arm": arm,
        "X-Driftgate-Model": answered["model"],
        "X-Driftgate-Version": answered["version"],
        "X-Driftgate-Role": result.role,
    }
    if result.fallback_reason:
        headers["X-Driftgate-Fallback-Reason"] = result.fallback_reason
    return headers


def _respond(response: UpstreamResponse, extra: dict[str, str]) -> Answer:
    headers = {"content-type": "application/json"}
    headers.update({k.lower(): v for k, v in response.headers.items() if k.lower() in _PASSED_BACK})
    headers.update({k: v for k, v in extra.items() if v})
    return Answer(response.status, headers, response.body)


def _measure(
    state: GatewayState, path: InferencePath, arm: str, labels: dict[str, str], started: float
) -> None:
    route = path.model
    route_label = state.route_label(route, answered_by=labels["model"])
    state.metrics.count_request(
        route_label,
        model=labels["model"],
        version=labels["version"],
        arm=arm,
        role=labels["role"],
        code=labels["code"],
    )
    elapsed = time.perf_counter() - started
    state.metrics.observe_request(
        route_label, arm, path.dialect, elapsed, exemplar(current_trace_id())
    )
    if arm in CANARY_ARMS and path.predicts and state.routes.get(route).canary is not None:
        state.canary_stats.observe(route, arm, failed=_target_failed(labels), seconds=elapsed)


def _target_failed(labels: dict[str, str]) -> bool:
    """Whether an answer counts against the target that gave it, for canary analysis: a
    fallback answered, a 5xx, or a 404 naming no version (the runtime has no such model
    or version: a canary pointed at a version the replicas lack must roll back, not be
    promoted). Other 4xx are the client's."""
    code = labels["code"]
    return (
        labels["role"] == "fallback"
        or code.startswith("5")
        or (code == "404" and not labels["version"])
    )


@get(
    [
        "/v2/models/{model:str}",
        "/v2/models/{model:str}/versions/{version:str}",
        "/v2/models/{model:str}/ready",
        "/v2/models/{model:str}/versions/{version:str}/ready",
        "/v1/models/{model:str}",
        "/v1/models/{model:str}/metadata",
        "/v1/models/{model:str}/versions/{version:str}",
        "/v1/models/{model:str}/versions/{version:str}/metadata",
        "/v1/models/{model:str}/describe",
        "/v1/models/{model:str}/versions/{version:str}/describe",
    ]
)
async def model_information(
    request: AnyRequest, model: FromPath[str], version: FromPath[str | None] = None
) -> Response[bytes]:
    """Metadata, status and readiness, read from any healthy replica."""
    state = gateway_state(request)
    state.authorize(request, "predict", model)
    _check_names(model, version)
    dispatcher = state.dispatcher
    replica = dispatcher.replicas.pick(set(), dispatcher.clock())
    if replica is None:
        raise NoUpstream("no runtime replica is available")
    try:
        # Percent-encoded again: the decoded path must never reach the request line as is.
        response = await dispatcher.upstream.get(replica + quote(request.url.path), 5.0)
    except UpstreamUnavailable as exc:
        raise NoUpstream(f"runtime replica unavailable: {exc}") from None
    reply = _respond(response, {})
    media_type = reply.headers.pop("content-type")
    return Response(
        reply.body, status_code=reply.status, headers=reply.headers, media_type=media_type
    )


def _check_names(model: str, version: str | None) -> None:
    """An invalid model name is an unknown model (404), an invalid version a bad request."""
    try:
        check_name(model, "model name")
    except PolicyError as exc:
        raise RouteNotFound(f"unknown model: {exc}") from None
    if version is not None:
        try:
            check_name(version, "version")
        except PolicyError as exc:
            raise BadGatewayRequest(str(exc)) from None


@post(
    [
        "/v1/models/{model_verb:str}",
        "/v1/models/{model:str}/versions/{version_verb:str}",
        "/v1/models/{model:str}/labels/{version_verb:str}",
    ],
    status_code=404,
)
async def no_inference_endpoint(request: AnyRequest) -> Response[bytes]:
    """A POST under the models' paths that is no dialect (``gateway.inference`` took those)."""
    raise RouteNotFound(f"no inference endpoint at {request.url.path}")


ROUTES = [model_information, no_inference_endpoint]

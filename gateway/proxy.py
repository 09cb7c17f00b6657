"""Inference routes of the gateway: the runtime's dialects and explain, routed by policy.

For each request: authenticate (scope ``predict`` or ``predict:<model>``), plan the route
(pure), dispatch (tries, retries, fallbacks), answer the client with the runtime's body
and headers saying who answered, then mirror to shadows in the background. An explain
request (``gateway.dialects``) is authorised and routed the same way, but its answer is
not a prediction: it is neither offered to the prediction log nor mirrored to shadows.

Response headers: ``X-Request-ID`` (echoed or generated), ``X-Driftgate-Arm`` (the A/B
arm, ``primary`` without a split), ``X-Driftgate-Model`` / ``X-Driftgate-Version`` (the
model and version that actually answered), ``X-Driftgate-Role`` (``primary`` or
``fallback``) and, after a fallback, ``X-Driftgate-Fallback-Reason``.
"""

from __future__ import annotations

import time
import uuid
from typing import Any

from litestar import Response, get, post
from litestar.params import FromPath

from gateway.dialects import parse_inference_path
from gateway.dispatcher import ProxyRequest, ProxyResult, UpstreamAnswer
from gateway.errors import BadGatewayRequest, GatewayError, NoUpstream, RouteNotFound
from gateway.planner import RequestContext, json_body_fields, plan_route
from gateway.policy import PolicyError
from gateway.state import AnyRequest, GatewayState, gateway_state
from gateway.upstream import FORWARDED_HEADERS, UpstreamUnavailable
from monitoring.metrics import exemplar
from monitoring.tracing import current_trace_id

_PASSED_BACK = ("content-type", "inference-header-content-length")


@post(
    [
        "/v2/models/{model:str}/infer",
        "/v2/models/{model:str}/versions/{version:str}/infer",
        "/v1/models/{model:str}/eval",
        "/v1/models/{model:str}/versions/{version:str}/eval",
        "/v1/models/{model:str}/explain",
        "/v1/models/{model:str}/versions/{version:str}/explain",
    ],
    status_code=200,
)
async def infer(
    request: AnyRequest, model: FromPath[str], version: FromPath[str | None] = None
) -> Response[bytes]:
    return await proxy(request)


@post(
    [
        "/v1/models/{model_verb:str}",
        "/v1/models/{model:str}/versions/{version_verb:str}",
        "/v1/models/{model:str}/labels/{version_verb:str}",
    ],
    status_code=200,
)
async def predict(request: AnyRequest) -> Response[bytes]:
    return await proxy(request)


async def proxy(request: AnyRequest) -> Response[bytes]:
    state = gateway_state(request)
    path = parse_inference_path(request.url.path, request.url.query)
    if path is None:
        raise RouteNotFound(f"no inference endpoint at {request.url.path}")
    route = path.model
    request_id = request.headers.get("x-request-id") or uuid.uuid4().hex
    started = time.perf_counter()
    arm, labels = "", {"model": "", "version": "", "role": "", "code": "500"}
    try:
        principal = state.authorize(request, "predict", route)
        body = await request.body()
        policy = state.routes.get(route)
        headers = {k: v for k, v in request.headers.items() if k.lower() in FORWARDED_HEADERS}
        context = RequestContext(
            route=route,
            request_id=request_id,
            subject=principal.subject if principal else None,
            headers={k.lower(): v for k, v in request.headers.items()},
            body_field=json_body_fields(body),
            version=path.version,
        )
        with state.tracer.start_as_current_span(f"route {route}") as span:
            try:
                plan = plan_route(policy, context)
            except PolicyError as exc:
                raise BadGatewayRequest(str(exc)) from None
            arm = plan.arm or ""
            span.set_attribute("driftgate.arm", arm)
            span.set_attribute(
                "driftgate.targets", [f"{t.model}:{t.version or ''}" for t in plan.targets]
            )
        shadows = plan.shadows if path.predicts else ()
        proxied = ProxyRequest(
            route,
            path,
            request_id,
            headers,
            body,
            {k.lower(): v for k, v in request.headers.items()},
        )
        try:
            result = await state.dispatcher.dispatch(policy, plan, proxied)
        except UpstreamAnswer as answer:
            labels["code"] = str(answer.response.status)
            if path.predicts:
                state.record(
                    proxied,
                    answer.response,
                    arm=arm,
                    role="primary",
                    model=route,
                    version="",
                    replica="",
                    started=started,
                    shadowed=bool(shadows),
                )
            return _respond(
                answer.response.body,
                answer.response.status,
                answer.response.headers,
                {"X-Request-ID": request_id, "X-Driftgate-Arm": arm},
            )
        labels.update(_answered(result))
        if path.predicts:
            state.record(
                proxied,
                result.response,
                arm=arm,
                role=result.role,
                model=labels["model"],
                version=labels["version"],
                replica=result.replica,
                started=started,
                shadowed=bool(shadows),
            )
        state.shadows.schedule(shadows, proxied, result.response, policy.timeout_s)
        return _respond(
            result.response.body,
            result.response.status,
            result.response.headers,
            _driftgate_headers(request_id, arm, result),
        )
    except GatewayError as exc:
        labels["code"] = str(exc.status_code)
        exc.headers.setdefault("X-Request-ID", request_id)
        raise
    except Exception as exc:
        labels["code"] = str(getattr(exc, "status_code", 500))
        raise
    finally:
        _measure(state, route, arm, labels, started)


def _answered(result: ProxyResult) -> dict[str, str]:
    headers = result.response.headers
    return {
        "model": headers.get("x-model-name", result.target.model),
        "version": headers.get("x-model-version", result.target.version or ""),
        "role": result.role,
        "code": str(result.response.status),
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


def _respond(body: bytes, status: int, upstream: Any, extra: dict[str, str]) -> Response[bytes]:
    headers = {k: v for k, v in upstream.items() if k.lower() in _PASSED_BACK}
    headers.update({k: v for k, v in extra.items() if v})
    media_type = headers.pop("content-type", "application/json")
    return Response(body, status_code=status, headers=headers, media_type=media_type)


def _measure(
    state: GatewayState, route: str, arm: str, labels: dict[str, str], started: float
) -> None:
    known = state.routes.is_configured(route) or labels["code"] not in ("404", "401", "403")
    route_label = route if known else "_unknown"
    # An unknown name also fills the model label (the default route targets it): drop it.
    model, version = (labels["model"], labels["version"]) if known else ("", "")
    state.metrics.requests.labels(
        route_label, model, version, arm, labels["role"], labels["code"]
    ).inc()
    state.metrics.request_duration.labels(route_label, arm).observe(
        time.perf_counter() - started, exemplar(current_trace_id())
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
    dispatcher = state.dispatcher
    replica = dispatcher.replicas.pick(set(), dispatcher.clock())
    if replica is None:
        raise NoUpstream("no runtime replica is available")
    try:
        response = await dispatcher.upstream.get(replica + request.url.path, 5.0)
    except UpstreamUnavailable as exc:
        raise NoUpstream(f"runtime replica unavailable: {exc}") from None
    return _respond(response.body, response.status, response.headers, {})


ROUTES = [infer, predict, model_information]

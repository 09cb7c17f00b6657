"""Admin API (scope ``admin``): routes read and replaced at run time, replicas and circuits.

``PUT /admin/routes/{model}`` takes the route policy as JSON (the same keys as in
gateway.yaml, see docs/routing.md). It is validated before anything changes: an invalid
policy answers 400 naming the field and the old policy keeps serving. A valid one is
persisted to ``routes_dir`` and swapped in atomically; the next request uses it. When
``routes_dir`` cannot be written (its lock or the file: permissions, a full disk), nothing
is swapped: 503 naming the folder and the error, counted as ``failed``. A body
over ``MAX_POLICY_BYTES`` answers 413 unread, and JSON nested deeper than msgspec decodes
answers 400 like any policy nested too deeply.

``GET /admin/routes/{model}`` answers 404 for a name no route can have. Every ``GET`` (and
``HEAD``: no body) reads ``routes_dir`` first, to answer a change another gateway sharing
it wrote a moment ago with the ETag that a ``PUT``'s ``If-Match``, checked there, takes.

``GET`` and ``PUT`` answer with the policy's ``ETag`` (``route_conditions.policy_etag``),
and ``GET /admin/routes`` gives each route's ETag next to its policy, so that a client can
write back what it listed without reading each route again. The list has an ``ETag`` of
its own (``routes_etag``, from the routes' names and ETags), which changes whenever a
route is added, replaced or removed. A ``PUT`` with ``If-Match`` replaces the route only
if it still has one of those ETags (``*``: only if the route is configured), checked under
the lock every gateway sharing ``routes_dir`` writes under; otherwise it answers 412 with
the ETag the route has now, and nothing changes. A ``PUT`` without ``If-Match`` replaces
whatever is there (the last writer wins). The write (a lock another gateway may hold, an
fsync) runs in a worker thread.

A ``GET`` with ``If-None-Match`` answers 304 (the ETag, no body) while the route (or the
list) still has one of those ETags, compared weakly (RFC 9110, 13.1.2): ``W/"x"`` matches
``"x"``, ``*`` any route (every name has a policy, the default one at least). Either
header, malformed, answers 400.

A ``PUT`` with ``If-None-Match`` writes only if the route has none of those ETags (weakly
compared), or with ``*`` only if it is not configured ("create, never replace"); else 412
with its ETag, and nothing changes. ``RouteTable`` checks it under the same lock as
``If-Match``, both at once, so no write by this gateway or another slips in between (a
route configured meanwhile with exactly the default policy keeps the ETag it had
unconfigured, and is refused all the same).

``DELETE /admin/routes/{model}`` removes what the admin API set (``RouteTable.remove``):
the route's file in ``routes_dir``, so that gateway.yaml's policy serves again, or the
default policy when gateway.yaml has none. It answers like ``GET``, what the route is now,
plus ``removed``, a sentence saying which. A route only gateway.yaml configures is 409 (that
is the file to change), one not configured at all 404, both before ``If-Match`` and
``If-None-Match``, which are checked as for ``PUT``. Each outcome is counted in
``driftgate_route_updates_total`` as a ``PUT``'s is, with ``operation="delete"`` (a 404 or
409 as ``rejected``; a refusal of a route not configured under ``_unknown``, so that names
callers make up add no series).

A ``DELETE`` of a route with a ``canary`` ends that canary and discards its progress (it
lived in the route's file): the answer's ``canary_discarded``, and a log line, say so
(``gateway.canary_removal``).
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import re
from typing import Any

import msgspec
from litestar import Response, delete, put, route
from litestar.params import FromPath
from litestar.types import Method

from gateway.balancer import ReplicaStatus
from gateway.canary_removal import canary_discarded
from gateway.errors import (
    BadGatewayRequest,
    Conflict,
    GatewayError,
    PayloadTooLarge,
    RouteNotFound,
    StorageFailed,
    UnsupportedMediaType,
)
from gateway.policy import (
    MAX_POLICY_BYTES,
    PolicyError,
    is_valid_name,
    parse_route,
    route_to_dict,
    too_deep,
)
from gateway.route_conditions import (
    IfMatch,
    RouteChanged,
    RouteMatched,
    RouteNotRemovable,
    policy_etag,
    routes_etag,
)
from gateway.state import UNKNOWN_ROUTE, AnyRequest, GatewayState, gateway_state

log = logging.getLogger("driftgate.gateway.routes")

#: The methods that read: ``HEAD`` answers as ``GET`` does, status and headers (the ETag
#: among them), and the server (uvicorn) sends no body, so a tool can check a route's ETag
#: cheaply.
_READ: list[Method] = ["GET", "HEAD"]
_ENTITY_TAG = r'(?:W/)?"[^"\x00-\x20\x7f]*"'
#: ``If-Match`` and ``If-None-Match``: ``*``, or a comma-separated list of entity tags
#: (RFC 9110, sections 13.1.1 and 13.1.2).
_ENTITY_TAGS = re.compile(rf"\s*(?:\*|{_ENTITY_TAG}(?:\s*,\s*{_ENTITY_TAG})*)\s*")


@route("/admin/routes", http_method=_READ)
async def list_routes(request: AnyRequest) -> Response[Any]:
    state = gateway_state(request)
    state.authorize(request, "admin")
    await state.read_routes_dir()
    routes = state.routes.configured()  # one snapshot: the ETag is the list's it answers
    etags = {name: policy_etag(policy) for name, policy in routes.items()}
    etag = routes_etag(etags)
    if _none_match(_entity_tags(request, "If-None-Match", read_by="GET /admin/routes"), etag):
        return Response(None, status_code=304, headers={"ETag": etag})
    answer = {
        name: {"etag": etags[name], "policy": route_to_dict(policy)}
        for name, policy in routes.items()
    }
    return Response(answer, headers={"ETag": etag})


@route("/admin/routes/{model:str}", http_method=_READ)
async def get_route(request: AnyRequest, model: FromPath[str]) -> Response[Any]:
    state = gateway_state(request)
    state.authorize(request, "admin")
    await state.read_routes_dir()
    try:
        policy = state.routes.get(model)
    except PolicyError as exc:
        raise RouteNotFound(f"unknown route: {exc}") from None
    etag = policy_etag(policy)
    if _none_match(_entity_tags(request, "If-None-Match"), etag):
        return Response(None, status_code=304, headers={"ETag": etag})
    answer = {
        "route": model,
        "configured": state.routes.is_configured(model),
        "policy": route_to_dict(policy),
    }
    return Response(answer, headers={"ETag": etag})


@put("/admin/routes/{model:str}", status_code=200)
async def put_route(request: AnyRequest, model: FromPath[str]) -> Response[dict[str, Any]]:
    state = gateway_state(request)
    state.authorize(request, "admin")
    try:
        # Weak tags keep their W/, so never equal an ETag: If-Match compares strongly.
        if_match = _entity_tags(request, "If-Match", unchanged=", nothing changed")
        if_none_match = _entity_tags(request, "If-None-Match", unchanged=", nothing changed")
        _refuse_yaml(request, model)
        policy = parse_route(model, _decode(model, await _policy_body(request)))
    except (PayloadTooLarge, BadGatewayRequest, UnsupportedMediaType):
        _count_update(state, model, "put", "rejected")
        raise
    except msgspec.DecodeError as exc:
        _count_update(state, model, "put", "rejected")
        raise BadGatewayRequest(f"the route policy is not valid JSON: {exc}") from None
    except PolicyError as exc:
        _count_update(state, model, "put", "rejected")
        raise BadGatewayRequest(f"invalid route policy, nothing changed: {exc}") from None
    try:
        etag = await asyncio.to_thread(state.routes.replace, model, policy, if_match, if_none_match)
    except RouteChanged as exc:
        _count_update(state, model, "put", "precondition_failed")
        return _precondition_failed(exc)
    except OSError as exc:
        _count_update(state, model, "put", "failed")
        raise _not_written(state, "write", exc) from None
    _count_update(state, model, "put", "applied")
    state.forget_unused_breakers()
    answer = {"route": model, "configured": True, "policy": route_to_dict(policy)}
    return Response(answer, headers={"ETag": etag})


@delete("/admin/routes/{model:str}", status_code=200)
async def delete_route(request: AnyRequest, model: FromPath[str]) -> Response[dict[str, Any]]:
    state = gateway_state(request)
    state.authorize(request, "admin")
    try:
        if not is_valid_name(model):
            state.routes.get(model)  # raises PolicyError naming the rule
        if_match = _entity_tags(request, "If-Match", unchanged=", nothing changed")
        if_none_match = _entity_tags(request, "If-None-Match", unchanged=", nothing changed")
    except PolicyError as exc:
        _count_update(state, model, "delete", "rejected")
        raise RouteNotFound(f"unknown route: {exc}") from None
    except BadGatewayRequest:
        _count_update(state, model, "delete", "rejected")
        raise
    try:
        # The policy removed, as the folder had it (a canary's latest step included): for
        # what the answer says of its canary.
        before, restored = await asyncio.to_thread(
            state.routes.remove_route, model, if_match, if_none_match
        )
    except RouteNotRemovable as exc:
        _count_update(state, model, "delete", "rejected")
        raise _not_removable(exc) from None
    except RouteChanged as exc:
        _count_update(state, model, "delete", "precondition_failed")
        return _precondition_failed(exc, method="DELETE")
    except OSError as exc:
        _count_update(state, model, "delete", "failed")
        raise _not_written(state, "remove", exc) from None
    _count_update(state, model, "delete", "applied")
    state.forget_unused_breakers()
    policy = state.routes.get(model)
    if restored is None:
        removed = (
            f"route {model} removed: it is no longer configured, and requests for {model} "
            "are served like any model without a route (the default policy)"
        )
    else:
        removed = (
            f"the policy set through the admin API for route {model} removed: gateway.yaml's "
            "policy serves again"
        )
    answer = {
        "route": model,
        "configured": restored is not None,
        "policy": route_to_dict(policy),
        "removed": removed,
    }
    discarded = canary_discarded(model, before, restored)
    if discarded is not None:
        log.info("%s", discarded)
        answer["canary_discarded"] = discarded
    return Response(answer, headers={"ETag": policy_etag(policy)})


def _not_removable(exc: RouteNotRemovable) -> GatewayError:
    if exc.in_gateway_yaml:
        return Conflict(
            f"route {exc.route} is configured in gateway.yaml, not through the admin API: "
            "remove or change it there (the gateway reads it at start). Nothing changed"
        )
    return RouteNotFound(
        f"route {exc.route} is not configured (not in gateway.yaml, nor set through the "
        "admin API): nothing to remove"
    )


def _not_written(state: GatewayState, verb: str, exc: OSError) -> StorageFailed:
    """503: ``routes_dir`` could not be written (its lock, the file); nothing changed."""
    reason = exc.strerror or str(exc)
    if exc.filename:
        reason = f"{reason} ({exc.filename})"
    return StorageFailed(
        f"could not {verb} the route file in {state.routes.routes_dir}: {reason}; the policy "
        "in force is unchanged"
    )


def _entity_tags(
    request: AnyRequest,
    header: str,
    unchanged: str = "",
    read_by: str = "GET /admin/routes/{route}",
) -> IfMatch | None:
    """The header's entity tags as sent (weak ones with their ``W/``), ``"*"``, or None
    without the header; one malformed is refused with 400 naming ``read_by``, the request
    that answers such ETags (``unchanged`` ends the message)."""
    values = request.headers.getall(header.lower(), [])
    if not values:
        return None
    joined = ", ".join(values)
    if not _ENTITY_TAGS.fullmatch(joined):
        raise BadGatewayRequest(
            f"{header}: expected * or quoted ETags as {read_by} answers them "
            f'(ETag: "3f9c..."){unchanged}'
        )
    if joined.strip() == "*":
        return "*"
    return frozenset(re.findall(_ENTITY_TAG, joined))


def _none_match(if_none_match: IfMatch | None, etag: str) -> bool:
    """Whether ``If-None-Match`` holds ``etag``, compared weakly (RFC 9110, section 8.8.3.2:
    the opaque tags alone, ``W/`` aside); ``*`` holds any, as what is read always exists (a
    route has a policy, the default one at least; the list may be empty)."""
    if if_none_match is None:
        return False
    if if_none_match == "*":
        return True
    return etag.removeprefix("W/") in {tag.removeprefix("W/") for tag in if_none_match}


def _precondition_failed(exc: RouteChanged, method: str = "PUT") -> Response[dict[str, Any]]:
    """412: the route is not the one the caller read; the answer names its ETag now."""
    if isinstance(exc, RouteMatched) and exc.star and method == "DELETE":
        message = (
            f"route {exc.route} is configured, and If-None-Match: * removes only a route that "
            "is not (so nothing ever). Nothing changed"
        )
    elif isinstance(exc, RouteMatched) and exc.star:
        message = (
            f"route {exc.route} is already configured (If-None-Match: * creates only a route "
            f"that is not): its ETag is {exc.etag}; to replace it, GET it and PUT with "
            "If-Match. Nothing changed"
        )
    elif isinstance(exc, RouteMatched):
        message = (
            f"route {exc.route} has ETag {exc.etag}, which If-None-Match lists: {method} only "
            "if it has another. Nothing changed"
        )
    elif exc.configured and method == "DELETE":
        message = (
            f"route {exc.route} changed since it was read (If-Match does not match): its ETag "
            f"is now {exc.etag}; GET it again, and DELETE with the new ETag if it should "
            "still go. Nothing changed"
        )
    elif exc.configured:
        message = (
            f"route {exc.route} changed since it was read (If-Match does not match): its ETag "
            f"is now {exc.etag}; GET it again, make the change on what it answers, and PUT "
            "that with the new ETag. Nothing changed"
        )
    else:
        message = (
            f"route {exc.route} is not configured (If-Match: * replaces only a route in "
            "gateway.yaml or routes_dir); PUT without If-Match to create it. Nothing changed"
        )
    return Response(
        {"error": message, "etag": exc.etag}, status_code=412, headers={"ETag": exc.etag}
    )


def _count_update(state: GatewayState, model: str, operation: str, outcome: str) -> None:
    """Count a PUT or DELETE (``operation`` ``put`` | ``delete``). Names come from callers,
    so the series stay bounded: a name no route can have is ``_invalid``, and one refused
    while not configured is ``_unknown`` (as in ``driftgate_requests_total``): only a change
    applied or a configured route's refusal carries its name."""
    if not is_valid_name(model):
        label = "_invalid"
    elif outcome == "applied" or state.routes.is_configured(model):
        label = model
    else:
        label = UNKNOWN_ROUTE
    state.metrics.route_updates.labels(label, operation, outcome).inc()


#: Media types of YAML (RFC 9512, and the ones in use before it).
_YAML_TYPES = frozenset({"application/yaml", "application/x-yaml", "text/yaml", "text/x-yaml"})


def _refuse_yaml(request: AnyRequest, model: str) -> None:
    """415 for a policy sent as YAML: it would fail as "not valid JSON", which does not say
    that the format is the problem, nor where YAML is read."""
    media_type = request.headers.get("content-type", "").partition(";")[0].strip().lower()
    if media_type in _YAML_TYPES:
        raise UnsupportedMediaType(
            f"the route policy is sent as {media_type}, and the admin API reads JSON: send it "
            f"as JSON (content-type: application/json), or use driftgate routes set {model} "
            "--file policy.yaml, which reads YAML. Nothing changed"
        )


async def _policy_body(request: AnyRequest) -> bytes:
    """The body, refused (413) past ``MAX_POLICY_BYTES``: unread when its length says so."""
    declared = request.headers.get("content-length", "")
    if declared.isdecimal() and int(declared) > MAX_POLICY_BYTES:
        raise _too_large(int(declared))
    body = await request.body()
    if len(body) > MAX_POLICY_BYTES:
        raise _too_large(len(body))
    return body


def _too_large(size: int) -> PayloadTooLarge:
    return PayloadTooLarge(
        f"route policy of {size} bytes exceeds the limit of {MAX_POLICY_BYTES} bytes"
    )


def _decode(model: str, body: bytes) -> object:
    """The body's JSON; refused when empty, or when it gives a key twice in one object
    (JSON decoders keep the last one silently, as gateway.yaml refuses to)."""
    if not body.strip():
        raise BadGatewayRequest(
            "the body is empty: send the route's whole policy as JSON (GET answers one), "
            "nothing changed"
        )
    try:
        decoded = msgspec.json.decode(body)
        json.loads(body, object_pairs_hook=functools.partial(_unique_keys, model))
    except RecursionError:  # msgspec (or json) gives up on JSON nested a thousand deep
        raise too_deep(model) from None
    return decoded


def _unique_keys(model: str, pairs: list[tuple[str, object]]) -> dict[str, object]:
    seen: dict[str, object] = {}
    for key, value in pairs:
        if key in seen:
            raise BadGatewayRequest(
                f"invalid route policy, nothing changed: routes.{model}: key {key!r} is given "
                "twice in one object (send it once)"
            )
        seen[key] = value
    return seen


@route("/admin/replicas", http_method=_READ)
async def list_replicas(request: AnyRequest) -> dict[str, Any]:
    state = gateway_state(request)
    state.authorize(request, "admin")
    state.forget_unused_breakers()  # a change another gateway or the canary made, too
    now = state.dispatcher.clock()
    return {
        "replicas": [_replica(s, now) for s in state.dispatcher.replicas.snapshot(now)],
        "circuits": [
            {"route": route, "model": target.model, "version": target.version, "state": value}
            for route, target, value in state.dispatcher.breaker_states(now)
        ],
        "shadow_circuits": [
            {"route": route, "model": target.model, "version": target.version, "state": value}
            for route, target, value in state.shadows.breaker_states(now)
        ],
        "discovery": state.discovery.status() if state.discovery is not None else None,
    }


def _replica(status: ReplicaStatus, now: float) -> dict[str, Any]:
    """A replica for operators: ejection as seconds left, not the internal monotonic clock."""
    shown: dict[str, Any] = msgspec.to_builtins(status)
    until = shown.pop("ejected_until")
    shown["ejected_for_s"] = round(max(0.0, until - now), 1) if status.ejected and until else 0.0
    return shown


ROUTES = [list_routes, get_route, put_route, delete_route, list_replicas]

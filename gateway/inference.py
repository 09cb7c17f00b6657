"""The inference endpoint: the runtime's dialects served as plain ASGI, ahead of Litestar.

Every HTTP request passes here first. A POST whose path is one of the runtime's dialects
(``gateway.dialects``: Open Inference Protocol, TF-Serving REST, eval, explain) is answered
here by ``gateway.proxy.answer``, and another method on such a path with 405 (``Allow:
OPTIONS, POST``); anything else (metadata, admin, feedback, reports, health, metrics) goes
on to the Litestar app. The hot path skips Litestar's per-request machinery (request
object, dependency injection, response object), which was about a third of the gateway's
CPU per proxied request (BENCHMARKS.md, "Gateway overhead").

What this module owns is the HTTP edge of that path:

- the body limit: 413 from ``Content-Length`` before anything is read, or as soon as a
  streamed body passes ``max_body_bytes`` (``body_too_large`` words the Litestar side's too);
- the request id (``X-Request-ID``, generated when absent) on every answer, errors included;
  a client's id longer than feedback takes (256 characters), or with characters other than
  visible ASCII, is refused with 400, since no label could ever be sent for it;
- one ``Authorization`` header at most, on every request, inference or not: with auth on,
  a request with several is refused with 400 (``gateway.auth.check_one_authorization``)
  before either side reads one, since a dict keeps the last and Litestar the first;
- the route template (``scope["path_template"]``) that names the SERVER span, which
  ``monitoring.tracing.ServerSpanMiddleware`` opens around this endpoint and Litestar alike;
- errors rendered as ``{"error": ...}`` by the same ``gateway.errors.error_reply`` as the
  Litestar app's handlers, so a client cannot tell which side answered.
"""

from __future__ import annotations

import os
from typing import Any

import msgspec

from gateway import proxy
from gateway.auth import AuthError, check_one_authorization
from gateway.dialects import InferencePath, parse_inference_path
from gateway.errors import BadGatewayRequest, PayloadTooLarge, error_reply
from gateway.state import GatewayState
from monitoring.tracing import request_headers

ASGIApp = Any
#: The longest ``X-Request-ID`` taken: ``POST /v1/feedback`` refers to requests by their id
#: and takes none longer (``gateway.feedback``).
MAX_REQUEST_ID_CHARS = 256


class ClientDisconnected(Exception):
    """The client hung up before its body arrived: there is nobody to answer."""


class InferenceEndpoint:
    """ASGI: inference POSTs answered here, everything else passed to ``app``."""

    def __init__(self, app: ASGIApp, state: GatewayState, max_body_bytes: int) -> None:
        self.app = app
        self.state = state
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = parse_inference_path(scope["path"], scope["query_string"].decode("latin-1"))
        if path is not None:
            scope["path_template"] = path.template
            if scope["method"] == "POST":
                await self._serve(path, scope, receive, send)
            else:
                await send_answer(send, _only_post(scope))
            return
        try:
            self._check_authorization_count(scope)
        except AuthError as exc:
            await send_answer(send, error_answer(exc, scope, {}))
            return
        await self.app(scope, receive, send)

    async def _serve(self, path: InferencePath, scope: Any, receive: Any, send: Any) -> None:
        headers = request_headers(scope)
        request_id, id_refusal = take_request_id(headers.get("x-request-id"))
        try:
            if id_refusal is not None:
                raise id_refusal
            self._check_authorization_count(scope)
            body = await read_body(receive, headers.get("content-length"), self.max_body_bytes)
            reply = await proxy.answer(self.state, proxy.Inbound(path, request_id, headers, body))
        except ClientDisconnected:
            return
        except Exception as exc:
            reply = error_answer(exc, scope, {"X-Request-ID": request_id})
        await send_answer(send, reply)

    def _check_authorization_count(self, scope: Any) -> None:
        if self.state.verifier is None:  # auth off: nothing reads the header
            return
        # Fewer names than header lines means some header is repeated: only then look.
        if len(request_headers(scope)) < len(scope["headers"]):
            try:
                check_one_authorization(scope["headers"])
            except AuthError as exc:
                self.state.metrics.auth_failures.labels(str(exc.status_code)).inc()
                raise


def _only_post(scope: Any) -> proxy.Answer:
    """Another method on an inference path: 405 naming the method (204 to ``OPTIONS``)."""
    allow = {"allow": "OPTIONS, POST"}
    if scope["method"] == "OPTIONS":
        return proxy.Answer(204, allow, b"")
    message = f"method {scope['method']} is not allowed on {scope['path']}; use POST"
    return proxy.Answer(
        405,
        {"content-type": "application/json", **allow},
        msgspec.json.encode({"error": message[:2000]}),
    )


def error_answer(exc: Exception, scope: Any, headers: dict[str, str]) -> proxy.Answer:
    """``{"error": ...}`` for ``exc``, as ``gateway.errors.error_reply`` words it."""
    status, extra, message = error_reply(exc, f"{scope['method']} {scope['path']}")
    return proxy.Answer(
        status,
        {"content-type": "application/json", **headers, **extra},
        msgspec.json.encode({"error": message}),
    )


def take_request_id(given: str | None) -> tuple[str, BadGatewayRequest | None]:
    """The request's id: the client's, or a new one when it sent none, or one that cannot be
    used (then with the 400 to answer under the new id)."""
    if not given:
        return new_request_id(), None
    problem = request_id_problem(given)
    if problem is None:
        return given, None
    return new_request_id(), BadGatewayRequest(problem)


def request_id_problem(request_id: str) -> str | None:
    """Why a client's ``X-Request-ID`` cannot be used, or None when it can."""
    if len(request_id) > MAX_REQUEST_ID_CHARS:
        return (
            f"X-Request-ID of {len(request_id)} characters is longer than the limit of "
            f"{MAX_REQUEST_ID_CHARS}; send a shorter id, or none and use the one the gateway "
            "answers with"
        )
    if not (request_id.isascii() and request_id.isprintable()) or " " in request_id:
        return (
            "X-Request-ID may hold only visible ASCII characters ('!' to '~', no spaces), "
            f"got {request_id!r}"
        )
    return None


def new_request_id() -> str:
    """32 random hex digits, like ``uuid4().hex`` at a quarter of its cost (no UUID object)."""
    return os.urandom(16).hex()


async def read_body(receive: Any, declared_length: str | None, limit: int) -> bytes:
    """The whole request body, refused with 413 as soon as it is known to pass ``limit``."""
    if declared_length is not None:
        try:
            declared = int(declared_length)
        except ValueError:
            raise BadGatewayRequest(
                f"Content-Length must be a number of bytes, got {declared_length!r}"
            ) from None
        if declared > limit:
            raise body_too_large(limit, declared)
    chunks: list[bytes] = []
    received = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientDisconnected
        chunk = message.get("body", b"")
        received += len(chunk)
        if received > limit:
            raise body_too_large(limit)
        if not message.get("more_body", False):
            if not chunks:
                return bytes(chunk)
            chunks.append(chunk)
            return b"".join(chunks)
        chunks.append(chunk)


def body_too_large(limit: int, declared: int | None = None) -> PayloadTooLarge:
    """The 413 for a body over ``limit`` bytes: ``declared`` from Content-Length, if it said."""
    if declared is not None:
        return PayloadTooLarge(
            f"request body of {declared} bytes exceeds the limit of {limit} bytes"
        )
    return PayloadTooLarge(
        f"request body too large: more than {limit} bytes arrived; the limit is {limit} bytes"
    )


async def send_answer(send: Any, reply: proxy.Answer) -> None:
    headers = [
        (name.encode("latin-1"), value.encode("latin-1")) for name, value in reply.headers.items()
    ]
    headers.append((b"content-length", str(len(reply.body)).encode("latin-1")))
    await send({"type": "http.response.start", "status": reply.status, "headers": headers})
    await send({"type": "http.response.body", "body": reply.body})

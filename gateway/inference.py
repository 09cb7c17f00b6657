"""The inference endpoint: the runtime's dialects served as plain ASGI, ahead of Litestar.

Every HTTP request passes here first. A POST whose path is one of the runtime's dialects
(``gateway.dialects``: Open Inference Protocol, TF-Serving REST, eval, explain) is answered
here by ``gateway.proxy.answer``; anything else (metadata, admin, feedback, reports, health,
metrics) goes on to the Litestar app. The hot path skips Litestar's per-request machinery
(request object, dependency injection, response object), which was about a third of the
gateway's CPU per proxied request (BENCHMARKS.md, "Gateway overhead").

What this module owns is the HTTP edge of that path:

- the body limit: 413 from ``Content-Length`` before anything is read, or as soon as a
  streamed body passes ``max_body_bytes``;
- the request id (``X-Request-ID``, generated when absent) on every answer, errors included;
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
from gateway.dialects import InferencePath, parse_inference_path
from gateway.errors import BadGatewayRequest, PayloadTooLarge, error_reply
from gateway.state import GatewayState
from monitoring.tracing import request_headers

ASGIApp = Any


class ClientDisconnected(Exception):
    """The client hung up before its body arrived: there is nobody to answer."""


class InferenceEndpoint:
    """ASGI: inference POSTs answered here, everything else passed to ``app``."""

    def __init__(self, app: ASGIApp, state: GatewayState, max_body_bytes: int) -> None:
        self.app = app
        self.state = state
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http" and scope["method"] == "POST":
            path = parse_inference_path(scope["path"], scope["query_string"].decode("latin-1"))
            if path is not None:
                scope["path_template"] = path.template
                await self._serve(path, scope, receive, send)
                return
        await self.app(scope, receive, send)

    async def _serve(self, path: InferencePath, scope: Any, receive: Any, send: Any) -> None:
        headers = request_headers(scope)
        request_id = headers.get("x-request-id") or new_request_id()
        try:
            body = await read_body(receive, headers.get("content-length"), self.max_body_bytes)
            reply = await proxy.answer(self.state, proxy.Inbound(path, request_id, headers, body))
        except ClientDisconnected:
            return
        except Exception as exc:
            status, extra, message = error_reply(exc, f"POST {scope['path']}")
            reply = proxy.Answer(
                status,
                {"content-type": "application/json", "X-Request-ID": request_id, **extra},
                msgspec.json.encode({"error": message}),
            )
        await send_answer(send, reply)


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
            raise PayloadTooLarge(
                f"request body of {declared} bytes exceeds the limit of {limit} bytes"
            )
    chunks: list[bytes] = []
    received = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientDisconnected
        chunk = message.get("body", b"")
        received += len(chunk)
        if received > limit:
            raise PayloadTooLarge(
                f"request body too large: more than {limit} bytes arrived; "
                f"the limit is {limit} bytes"
            )
        if not message.get("more_body", False):
            if not chunks:
                return bytes(chunk)
            chunks.append(chunk)
            return b"".join(chunks)
        chunks.append(chunk)


async def send_answer(send: Any, reply: proxy.Answer) -> None:
    headers = [
        (name.encode("latin-1"), value.encode("latin-1")) for name, value in reply.headers.items()
    ]
    headers.append((b"content-length", str(len(reply.body)).encode("latin-1")))
    await send({"type": "http.response.start", "status": reply.status, "headers": headers})
    await send({"type": "http.response.body", "body": reply.body})

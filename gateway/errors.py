"""Errors the gateway itself answers, each with its HTTP status; rendered as ``{"error": ...}``.

``error_reply`` is the one renderer: the Litestar app's exception handlers and the inference
endpoint (``gateway.inference``) both answer with its status, headers and message.
"""

from __future__ import annotations

import logging

from gateway.auth import AuthError

log = logging.getLogger("driftgate.gateway")
UNEXPECTED_MESSAGE = "internal gateway error; see the gateway log"


#: The longest message an error carries: messages quote what the client sent.
MAX_MESSAGE_CHARS = 2_000


class GatewayError(Exception):
    status_code = 500
    #: A 5xx is logged as a warning, unless ``quiet``: a refusal that a burst repeats
    #: thousands of times, and that the component refusing logs (at most once a minute).
    quiet = False

    def __init__(self, message: str, headers: dict[str, str] | None = None) -> None:
        if len(message) > MAX_MESSAGE_CHARS:
            cut = len(message) - MAX_MESSAGE_CHARS
            message = f"{message[:MAX_MESSAGE_CHARS]}... ({cut} more characters)"
        super().__init__(message)
        self.message = message
        self.headers = headers or {}


class BadGatewayRequest(GatewayError):
    status_code = 400


class RouteNotFound(GatewayError):
    status_code = 404


class Conflict(GatewayError):
    """The request contradicts where the resource lives (a route only gateway.yaml sets)."""

    status_code = 409


class PayloadTooLarge(GatewayError):
    status_code = 413


class UnsupportedMediaType(GatewayError):
    status_code = 415


class StorageFailed(GatewayError):
    """A file the gateway must write could not be (permissions, a full disk, a read-only
    mount); nothing changed."""

    status_code = 503


class NoUpstream(GatewayError):
    """No target could answer: every replica down, circuits open (503) or budget spent (504)."""

    status_code = 503


class UpstreamTimeout(GatewayError):
    status_code = 504


def error_reply(exc: Exception, request: str) -> tuple[int, dict[str, str], str]:
    """Status, headers and message of the ``{"error": ...}`` answer to ``exc``.

    Auth failures carry ``WWW-Authenticate``; the gateway's own errors their status and
    headers (5xx are logged as warnings, but ``quiet`` ones); anything else is a 500 that
    shows the client no stack trace and logs one, naming ``request``
    (``"POST /v2/models/m/infer"``).
    """
    if isinstance(exc, AuthError):
        return exc.status_code, {"WWW-Authenticate": exc.www_authenticate}, exc.message
    if isinstance(exc, GatewayError):
        if exc.status_code >= 500 and not exc.quiet:
            log.warning("%s", exc.message)
        return exc.status_code, dict(exc.headers), exc.message
    log.error("unhandled error on %s", request, exc_info=exc)
    return 500, {}, UNEXPECTED_MESSAGE

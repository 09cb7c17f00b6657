"""Errors the gateway itself answers, each with its HTTP status; rendered as ``{"error": ...}``."""

from __future__ import annotations


class GatewayError(Exception):
    status_code = 500

    def __init__(self, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.headers = headers or {}


class BadGatewayRequest(GatewayError):
    status_code = 400


class RouteNotFound(GatewayError):
    status_code = 404


class PayloadTooLarge(GatewayError):
    status_code = 413


class NoUpstream(GatewayError):
    """No target could answer: every replica down, circuits open (503) or budget spent (504)."""

    status_code = 503


class UpstreamTimeout(GatewayError):
    status_code = 504

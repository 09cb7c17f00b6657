"""HTTP calls from the gateway to runtime replicas.

The httpx API over aiohttp's connection pool (``httpx-aiohttp``): plain httpx's pool
collapses under concurrency (measured in BENCHMARKS.md), aiohttp's holds. Tests pass an
``httpx.MockTransport`` instead. Failures are sorted into what the dispatcher needs to
know: the replica could not be reached or timed out (``UpstreamUnavailable``: retry on
another replica, count against the replica) versus an HTTP answer (any status, returned).

    UpstreamError
    ├── UpstreamUnavailable   connect error, reset, or no answer in time (kind says which)
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import httpx

#: Request headers the gateway forwards to replicas (hop-by-hop and auth headers stay here).
FORWARDED_HEADERS = (
    "content-type",
    "content-encoding",
    "inference-header-content-length",
    "accept",
)


class UpstreamError(Exception):
    pass


class UpstreamUnavailable(UpstreamError):
    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind  # "connect" | "timeout" | "protocol"


@dataclass(frozen=True)
class UpstreamResponse:
    status: int
    headers: Mapping[str, str]
    body: bytes


def default_transport(max_connections: int = 256) -> httpx.AsyncBaseTransport:
    from httpx_aiohttp import AiohttpTransport

    limits = httpx.Limits(
        max_connections=max_connections,
        max_keepalive_connections=max_connections,
        keepalive_expiry=30,
    )
    return AiohttpTransport(limits=limits)


class UpstreamClient:
    def __init__(self, transport: httpx.AsyncBaseTransport | None = None) -> None:
        self._client = httpx.AsyncClient(transport=transport or default_transport())

    async def send(
        self, method: str, url: str, headers: Mapping[str, str], body: bytes, timeout_s: float
    ) -> UpstreamResponse:
        try:
            response = await self._client.request(
                method, url, headers=headers, content=body, timeout=timeout_s
            )
        except httpx.TimeoutException as exc:
            raise UpstreamUnavailable("timeout", f"{url}: no answer within {timeout_s:g}s") from exc
        except httpx.TransportError as exc:
            raise UpstreamUnavailable("connect", f"{url}: {type(exc).__name__}: {exc}") from exc
        return UpstreamResponse(response.status_code, response.headers, response.content)

    async def get(self, url: str, timeout_s: float) -> UpstreamResponse:
        return await self.send("GET", url, {}, b"", timeout_s)

    async def close(self) -> None:
        await self._client.aclose()

"""HTTP calls from the gateway to runtime replicas.

Three implementations of one small interface (``Upstream``):

- ``gateway.http1.Http1Upstream`` (the default): a lean HTTP/1.1 keep-alive pool over
  asyncio and httptools, about 0.2 ms of CPU per call cheaper than aiohttp (BENCHMARKS.md).
- ``AiohttpUpstream``: aiohttp's connection pool, directly; the previous default, kept as
  the benchmark's comparison. Plain httpx's pool collapses under concurrency (~230 req/s at
  64 connections, seconds of p99), and the httpx API layered over aiohttp
  (``httpx-aiohttp``) costs ~0.3-0.6 ms of CPU per call more than aiohttp alone.
- ``HttpxUpstream``: the httpx API over any httpx transport. Tests pass
  ``httpx.MockTransport`` to exercise the gateway without sockets, and the benchmark uses
  it to keep the comparison honest.

Failures are sorted into what the dispatcher needs: the replica could not be reached or
did not answer in time (``UpstreamUnavailable``: retry elsewhere, count against the
replica) versus an HTTP answer (any status, returned).

    UpstreamError
    └── UpstreamUnavailable   connect error, reset, or no answer in time (kind says which)
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

import httpx

if TYPE_CHECKING:
    import aiohttp

#: Request headers the gateway forwards to replicas (hop-by-hop and auth headers stay here).
FORWARDED_HEADERS = frozenset(
    {"content-type", "content-encoding", "inference-header-content-length", "accept"}
)
MAX_CONNECTIONS = 256
#: Seconds an idle upstream connection stays in the pool: shorter than the runtime keeps it
#: (``driftgate.cli.RUNTIME_KEEP_ALIVE_S``), so the gateway never reuses one the runtime is
#: closing (measured: thousands of resets a second at 64 connections with uvicorn's 5 s).
KEEPALIVE_S = 30


class UpstreamError(Exception):
    pass


class UpstreamUnavailable(UpstreamError):
    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind  # "connect" | "timeout"


@dataclass(frozen=True)
class UpstreamResponse:
    status: int
    headers: Mapping[str, str]  # case-insensitive
    body: bytes


class Upstream(Protocol):
    async def send(
        self, method: str, url: str, headers: Mapping[str, str], body: bytes, timeout_s: float
    ) -> UpstreamResponse: ...

    async def get(self, url: str, timeout_s: float) -> UpstreamResponse: ...

    def forget(self, base_url: str) -> None:
        """A replica left the pool: close its idle connections, keep no state for it."""

    async def close(self) -> None: ...


class AiohttpUpstream:
    """Keep-alive pool of up to ``MAX_CONNECTIONS``; the session is made on first use
    because aiohttp binds it to the running event loop."""

    def __init__(self) -> None:
        self._session: aiohttp.ClientSession | None = None

    async def send(
        self, method: str, url: str, headers: Mapping[str, str], body: bytes, timeout_s: float
    ) -> UpstreamResponse:
        import aiohttp

        if self._session is None:
            connector = aiohttp.TCPConnector(limit=MAX_CONNECTIONS, keepalive_timeout=KEEPALIVE_S)
            self._session = aiohttp.ClientSession(connector=connector, auto_decompress=False)
        try:
            async with self._session.request(
                method,
                url,
                headers=dict(headers),
                data=body,
                timeout=aiohttp.ClientTimeout(total=timeout_s),
            ) as response:
                content = await response.read()
                return UpstreamResponse(response.status, response.headers, content)
        except TimeoutError as exc:
            raise UpstreamUnavailable("timeout", f"{url}: no answer within {timeout_s:g}s") from exc
        except aiohttp.ClientError as exc:
            raise UpstreamUnavailable("connect", f"{url}: {type(exc).__name__}: {exc}") from exc

    async def get(self, url: str, timeout_s: float) -> UpstreamResponse:
        return await self.send("GET", url, {}, b"", timeout_s)

    def forget(self, base_url: str) -> None:
        pass  # aiohttp closes idle connections itself after its keep-alive timeout

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()


class HttpxUpstream:
    def __init__(self, transport: httpx.AsyncBaseTransport) -> None:
        self._client = httpx.AsyncClient(transport=transport)

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

    def forget(self, base_url: str) -> None:
        pass  # httpx closes idle connections itself after its keep-alive expiry

    async def close(self) -> None:
        await self._client.aclose()


def make_upstream(transport: httpx.AsyncBaseTransport | None = None) -> Upstream:
    """``Http1Upstream`` by default; the httpx API over ``transport`` when one is given."""
    if transport is not None:
        return HttpxUpstream(transport)
    from gateway.http1 import Http1Upstream  # it builds on this module's types

    return Http1Upstream()

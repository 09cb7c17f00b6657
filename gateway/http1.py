"""A lean HTTP/1.1 keep-alive client for the gateway's calls to runtime replicas.

The default ``Upstream`` (``gateway.upstream.make_upstream``). It speaks exactly what the
gateway needs of a replica on a trusted network: one request at a time per connection,
``Content-Length`` request bodies, responses with ``Content-Length`` or chunked bodies
(parsed by ``httptools``, the parser uvicorn already uses), plain ``http://`` only.
Measured on the demo (BENCHMARKS.md): 0.17 ms of CPU per proxied request for a bare proxy
built on it, against 0.37 ms for the same proxy on aiohttp, whose generality (cookies,
redirects, multipart, tracing hooks) the gateway pays for and never uses.

Connections are pooled per origin, last used first, and dropped after ``KEEPALIVE_S``
idle, when the runtime asked to close (``Connection: close``), or after any failure. At
most ``max_connections`` are open per origin; further calls wait for one to come back.

The hot path (a free slot and an idle connection) never suspends but on the answer: the
call's deadline is a timer on the answer's future, not ``asyncio.timeout``, and the slot
bound is a counter with a queue of waiters, not ``asyncio.Semaphore``. Both stdlib helpers
are pure Python in 3.11 and cost about a tenth of the gateway's CPU per proxied request
(BENCHMARKS.md); waiting for a slot or a new connection, the rare paths, still use
``asyncio.timeout_at`` under the same deadline.

Failures map onto ``UpstreamUnavailable`` like every ``Upstream``: ``kind="timeout"``
when no complete answer came within the call's budget (connecting included), and
``kind="connect"`` when the connection was refused, reset or closed before a complete
answer.

What cannot be written on the wire as it is never is: a request target holding a space, a
control character (CR, LF) or a non-ASCII character raises :class:`InvalidRequestTarget`
(a ``ValueError``: the caller's mistake, not the replica's) before any connection is used,
and a header holding a line break raises ``UpstreamUnavailable``. Either would let the
caller write lines of its own into the request.
"""

from __future__ import annotations

import asyncio
import time
from collections import defaultdict, deque
from collections.abc import Mapping
from typing import cast
from urllib.parse import urlsplit

import httptools

from gateway.upstream import KEEPALIVE_S, MAX_CONNECTIONS, UpstreamResponse, UpstreamUnavailable

Origin = tuple[str, int]


class InvalidRequestTarget(ValueError):
    """A request target that cannot go on a request line as it is (percent-encode it)."""


class _Connection(asyncio.Protocol):
    """One keep-alive connection; ``exchange`` sends a request and awaits its answer."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.answer: asyncio.Future[UpstreamResponse] | None = None
        self.reusable = False
        self.idle_since = 0.0
        self._headers: dict[str, str] = {}
        self._body: list[bytes] = []
        self._lost = False

    # -- asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is no subclass

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self._fail(f"unreadable answer: {exc}")

    def eof_received(self) -> bool:
        return False  # close our side too

    def connection_lost(self, exc: Exception | None) -> None:
        self._lost = True
        self._fail("connection closed before a complete answer" + (f": {exc}" if exc else ""))

    # -- httptools callbacks

    def on_header(self, name: bytes, value: bytes) -> None:
        self._headers[name.decode("latin-1").lower()] = value.decode("latin-1")

    def on_body(self, body: bytes) -> None:
        self._body.append(body)

    def on_message_complete(self) -> None:
        answer, self.answer = self.answer, None
        self.reusable = self.parser.should_keep_alive()
        response = UpstreamResponse(
            self.parser.get_status_code(), self._headers, b"".join(self._body)
        )
        self._headers, self._body = {}, []
        if answer is not None and not answer.done():
            answer.set_result(response)

    # -- use

    def usable(self, now: float) -> bool:
        return (
            not self._lost
            and self.transport is not None
            and not self.transport.is_closing()
            and now - self.idle_since < KEEPALIVE_S
        )

    async def exchange(self, head: bytes, body: bytes, deadline: float) -> UpstreamResponse:
        """Send one request; its answer, or ``TimeoutError`` past ``deadline`` (loop time)."""
        assert self.transport is not None
        loop = asyncio.get_running_loop()
        answer: asyncio.Future[UpstreamResponse] = loop.create_future()
        self.answer = answer
        self.reusable = False
        self.transport.write(head + body)
        timer = loop.call_at(deadline, _expire, answer)
        try:
            return await answer
        finally:
            timer.cancel()

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()

    def _fail(self, message: str) -> None:
        answer, self.answer = self.answer, None
        if answer is not None and not answer.done():
            answer.set_exception(ConnectionError(message))
        if self.transport is not None:
            self.transport.close()


class _Pool:
    """Idle connections to one origin, and a bound on how many may be in use at once."""

    def __init__(self, max_connections: int) -> None:
        self.idle: list[_Connection] = []
        self.max_connections = max_connections
        self.in_use = 0
        self.retired = False  # its replica left: connections close after their call
        #: Callers waiting for a slot, first come first served; a slot given back is handed
        #: to the first waiter still waiting (``in_use`` unchanged).
        self.waiters: deque[asyncio.Future[None]] = deque()

    def try_take_slot(self) -> bool:
        if self.in_use < self.max_connections and not self.waiters:
            self.in_use += 1
            return True
        return False

    async def wait_for_slot(self) -> None:
        waiter = asyncio.get_running_loop().create_future()
        self.waiters.append(waiter)
        try:
            await waiter
        except BaseException:
            if waiter.done() and not waiter.cancelled():
                self.give_back_slot()  # handed over just as the caller gave up: pass it on
            raise

    def give_back_slot(self) -> None:
        while self.waiters:
            waiter = self.waiters.popleft()
            if not waiter.done():  # a cancelled waiter stays in the queue until here
                waiter.set_result(None)
                return
        self.in_use -= 1

    def reuse(self, now: float) -> _Connection | None:
        """The most recently used idle connection still fit for use, or None."""
        while self.idle:
            connection = self.idle.pop()
            if connection.usable(now):
                return connection
            connection.close()
        return None


class Http1Upstream:
    """Keep-alive HTTP/1.1 pools, one per replica origin (see the module docstring)."""

    def __init__(self, max_connections: int = MAX_CONNECTIONS) -> None:
        self._max_connections = max_connections
        self._pools: defaultdict[Origin, _Pool] = defaultdict(lambda: _Pool(self._max_connections))
        self._origins: dict[str, Origin] = {}

    async def send(
        self, method: str, url: str, headers: Mapping[str, str], body: bytes, timeout_s: float
    ) -> UpstreamResponse:
        origin, target = self._split(url)
        head = _request_head(method, target, origin, headers, len(body))
        pool = self._pools[origin]
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        connection: _Connection | None = None
        response: UpstreamResponse | None = None
        has_slot = False
        try:
            has_slot = pool.try_take_slot()
            if not has_slot:
                async with asyncio.timeout_at(deadline):
                    await pool.wait_for_slot()
                has_slot = True
            connection = pool.reuse(time.monotonic())
            if connection is None:
                async with asyncio.timeout_at(deadline):
                    _, connection = await loop.create_connection(_Connection, *origin)
            response = await connection.exchange(head, body, deadline)
        except TimeoutError:
            raise UpstreamUnavailable(
                "timeout", f"{url}: no answer within {timeout_s:g}s"
            ) from None
        except (OSError, ConnectionError) as exc:
            raise UpstreamUnavailable("connect", f"{url}: {type(exc).__name__}: {exc}") from None
        finally:
            # Only a connection that answered in full and may be kept goes back to the pool;
            # after a timeout, a failure or a cancellation its answer may still arrive.
            if connection is not None:
                if response is not None and connection.reusable and not pool.retired:
                    connection.idle_since = time.monotonic()
                    pool.idle.append(connection)
                else:
                    connection.close()
            if has_slot:
                pool.give_back_slot()
        return response

    async def get(self, url: str, timeout_s: float) -> UpstreamResponse:
        return await self.send("GET", url, {}, b"", timeout_s)

    def forget(self, base_url: str) -> None:
        origin = self._origins.pop(base_url, None)
        pool = self._pools.pop(origin, None) if origin is not None else None
        if pool is not None:
            pool.retired = True
            for connection in pool.idle:
                connection.close()
            pool.idle.clear()

    async def close(self) -> None:
        for pool in self._pools.values():
            for connection in pool.idle:
                connection.close()
            pool.idle.clear()

    def _split(self, url: str) -> tuple[Origin, str]:
        """(host, port) and the request target of ``url``; origins are parsed once each."""
        cut = url.find("/", url.find("//") + 2)
        base, target = (url, "/") if cut < 0 else (url[:cut], url[cut:])
        known = self._origins.get(base)
        if known is None:
            parts = urlsplit(base)
            if parts.scheme != "http" or not parts.hostname:
                raise UpstreamUnavailable("connect", f"{url}: only http:// replicas are supported")
            known = (parts.hostname, parts.port or 80)
            self._origins[base] = known
        return known, target


def _expire(answer: asyncio.Future[UpstreamResponse]) -> None:
    if not answer.done():
        answer.set_exception(TimeoutError())


#: Request headers the client sets itself (``connection`` and ``transfer-encoding`` are
#: hop-by-hop: the client keeps connections alive and always sends ``Content-Length``).
_OWN_HEADERS = frozenset({"host", "content-length", "connection", "transfer-encoding"})


def _request_head(
    method: str, target: str, origin: Origin, headers: Mapping[str, str], length: int
) -> bytes:
    _check_target(target)
    host = f"[{origin[0]}]" if ":" in origin[0] else origin[0]  # an IPv6 address
    lines = [f"{method} {target} HTTP/1.1\r\nhost: {host}:{origin[1]}\r\ncontent-length: {length}"]
    for name, value in headers.items():
        if name.lower() in _OWN_HEADERS:
            continue
        if "\r" in value or "\n" in value or "\r" in name or "\n" in name:
            raise UpstreamUnavailable("connect", f"header {name!r} holds a line break")
        lines.append(f"{name}: {value}")
    lines.append("\r\n")
    return "\r\n".join(lines).encode("latin-1")


def _check_target(target: str) -> None:
    """Printable ASCII without spaces only: anything else would end or split the line."""
    if target.isascii() and target.isprintable() and " " not in target:
        return
    shown = repr(target) if len(target) <= 200 else f"{target[:200]!r}..."
    raise InvalidRequestTarget(
        f"request target {shown} holds a space, a control or a non-ASCII character;"
        " percent-encode it"
    )

"""The gateway's HTTP/1.1 upstream client (gateway/http1.py) against a real socket server.

The server is a few lines of asyncio on a loopback port, scripted per test: it answers,
chunks, closes, stalls or cuts an answer short, and counts the connections it accepted,
so that keep-alive reuse and every failure mode are observed on the wire.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

import pytest

import gateway.http1
from gateway.http1 import Http1Upstream, InvalidRequestTarget
from gateway.upstream import UpstreamUnavailable

Reply = Callable[[bytes], Awaitable[bytes | None]]  # request head -> raw answer (None: stall)

OK = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nX-Model-Name: iris\r\n"


def answer(body: bytes, extra: bytes = b"") -> bytes:
    return OK + extra + b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body


class Server:
    """Reads a request (head and Content-Length body), writes ``reply(head)``, and repeats."""

    def __init__(self, reply: Reply) -> None:
        self.reply = reply
        self.connections = 0
        self.open_now = 0
        self.most_open = 0
        self.requests: list[bytes] = []
        self.port = 0
        self._server: asyncio.Server | None = None

    async def __aenter__(self) -> Server:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *_: object) -> None:
        assert self._server is not None
        self._server.close()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        self.open_now += 1
        self.most_open = max(self.most_open, self.open_now)
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = next(
                    int(line.split(b":")[1])
                    for line in head.split(b"\r\n")
                    if line.lower().startswith(b"content-length:")
                )
                body = await reader.readexactly(length)
                self.requests.append(head + body)
                raw = await self.reply(head)
                if raw is None:
                    await asyncio.sleep(3600)
                writer.write(raw or b"")
                await writer.drain()
                if raw is not None and b"Connection: close" in raw:
                    break
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            self.open_now -= 1
            writer.close()


def run(test: Callable[[], Coroutine[Any, Any, None]]) -> None:
    asyncio.run(test())


def test_connections_are_kept_alive_and_answers_read_whole() -> None:
    async def reply(_: bytes) -> bytes:
        return answer(b'{"outputs": [1]}')

    async def scenario() -> None:
        async with Server(reply) as server:
            client = Http1Upstream()
            first = await client.send(
                "POST", server.url + "/v2/models/iris/infer", {"x-request-id": "r1"}, b"{}", 2
            )
            second = await client.get(server.url + "/v2/models/iris", 2)
            await client.close()
        assert first.status == 200 and first.body == b'{"outputs": [1]}'
        assert first.headers["x-model-name"] == "iris"  # names lower-cased
        assert second.status == 200
        assert server.connections == 1
        assert server.requests[0].startswith(b"POST /v2/models/iris/infer HTTP/1.1\r\n")
        assert b"x-request-id: r1\r\n" in server.requests[0]
        assert server.requests[0].endswith(b"\r\n\r\n{}")

    run(scenario)


def test_a_chunked_answer_is_reassembled() -> None:
    async def reply(_: bytes) -> bytes:
        return (
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
            b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n"
        )

    async def scenario() -> None:
        async with Server(reply) as server:
            client = Http1Upstream()
            response = await client.send("POST", server.url + "/x", {}, b"", 2)
            await client.close()
        assert response.body == b"hello world"

    run(scenario)


def test_a_connection_the_runtime_closes_is_not_reused() -> None:
    async def reply(_: bytes) -> bytes:
        return answer(b"{}", b"Connection: close\r\n")

    async def scenario() -> None:
        async with Server(reply) as server:
            client = Http1Upstream()
            for _ in range(3):
                assert (await client.send("POST", server.url + "/x", {}, b"", 2)).status == 200
            await client.close()
        assert server.connections == 3

    run(scenario)


def test_an_idle_connection_past_the_keepalive_is_replaced(monkeypatch) -> None:
    monkeypatch.setattr(gateway.http1, "KEEPALIVE_S", 0.05)

    async def reply(_: bytes) -> bytes:
        return answer(b"{}")

    async def scenario() -> None:
        async with Server(reply) as server:
            client = Http1Upstream()
            await client.send("POST", server.url + "/x", {}, b"", 2)
            await asyncio.sleep(0.1)
            await client.send("POST", server.url + "/x", {}, b"", 2)
            await client.close()
        assert server.connections == 2

    run(scenario)


def test_a_refused_connection_is_unavailable_connect() -> None:
    async def scenario() -> None:
        async with Server(lambda _: asyncio.sleep(0, b"")) as server:
            url = server.url
        with pytest.raises(UpstreamUnavailable) as caught:  # the server is gone
            await Http1Upstream().send("POST", url + "/x", {}, b"", 2)
        assert caught.value.kind == "connect"

    run(scenario)


def test_no_answer_in_time_is_a_timeout_and_the_connection_is_dropped() -> None:
    calls = 0

    async def reply(_: bytes) -> bytes | None:
        nonlocal calls
        calls += 1
        return None if calls == 1 else answer(b"{}")

    async def scenario() -> None:
        async with Server(reply) as server:
            client = Http1Upstream()
            with pytest.raises(UpstreamUnavailable) as caught:
                await client.send("POST", server.url + "/x", {}, b"", 0.2)
            later = await client.send("POST", server.url + "/x", {}, b"", 2)
            await client.close()
        assert caught.value.kind == "timeout"
        assert "no answer within 0.2s" in str(caught.value)
        assert later.status == 200
        assert server.connections == 2  # the stalled connection was never reused

    run(scenario)


def test_an_answer_cut_short_is_unavailable_connect() -> None:
    async def reply(_: bytes) -> bytes:
        return OK + b"Content-Length: 100\r\nConnection: close\r\n\r\n{partial"

    async def scenario() -> None:
        async with Server(reply) as server:
            with pytest.raises(UpstreamUnavailable) as caught:
                await Http1Upstream().send("POST", server.url + "/x", {}, b"", 2)
        assert caught.value.kind == "connect"
        assert "before a complete answer" in str(caught.value)

    run(scenario)


def test_at_most_max_connections_are_open_per_replica() -> None:
    async def reply(_: bytes) -> bytes:
        await asyncio.sleep(0.05)
        return answer(b"{}")

    async def scenario() -> None:
        async with Server(reply) as server:
            client = Http1Upstream(max_connections=2)
            answers = await asyncio.gather(
                *(client.send("POST", server.url + "/x", {}, b"", 5) for _ in range(6))
            )
            await client.close()
        assert [a.status for a in answers] == [200] * 6
        assert server.most_open == 2

    run(scenario)


def test_a_header_with_a_line_break_is_never_written() -> None:
    async def scenario() -> None:
        with pytest.raises(UpstreamUnavailable, match="line break"):
            await Http1Upstream().send(
                "POST", "http://127.0.0.1:9/x", {"x-evil": "a\r\nhost: b"}, b"", 1
            )

    run(scenario)


@pytest.mark.parametrize(
    "target",
    ["/v2/models/x\r\nX-Injected: 1", "/v2/models/a b", "/v2/models/\u2603", "/v2/models/a\tb"],
    ids=["crlf", "space", "non-ascii", "tab"],
)
def test_a_target_that_would_break_the_request_line_is_never_written(target: str) -> None:
    async def reply(_: bytes) -> bytes:
        return answer(b"{}")

    async def scenario() -> None:
        async with Server(reply) as server:
            client = Http1Upstream()
            with pytest.raises(InvalidRequestTarget, match="percent-encode it") as caught:
                await client.get(server.url + target, 2)
            after = await client.get(server.url + "/v2/models/iris", 2)
            await client.close()
        assert isinstance(caught.value, ValueError)  # the caller's mistake, not the replica's
        assert after.status == 200
        [request] = server.requests  # the refused call wrote nothing, not even its first line
        assert request.split(b"\r\n")[0] == b"GET /v2/models/iris HTTP/1.1"

    run(scenario)


def test_a_call_that_times_out_waiting_for_a_slot_leaks_none() -> None:
    async def reply(_: bytes) -> bytes:
        await asyncio.sleep(0.3)
        return answer(b"{}")

    async def scenario() -> None:
        async with Server(reply) as server:
            client = Http1Upstream(max_connections=1)
            slow = asyncio.ensure_future(client.send("POST", server.url + "/x", {}, b"", 5))
            await asyncio.sleep(0.05)  # the only slot is taken
            with pytest.raises(UpstreamUnavailable) as caught:
                await client.send("POST", server.url + "/x", {}, b"", 0.05)
            cancelled = asyncio.ensure_future(client.send("POST", server.url + "/x", {}, b"", 5))
            await asyncio.sleep(0.01)
            cancelled.cancel()
            assert (await slow).status == 200
            after = await asyncio.wait_for(client.send("POST", server.url + "/x", {}, b"", 5), 2)
            pool = next(iter(client._pools.values()))
            await client.close()
        assert caught.value.kind == "timeout"
        assert cancelled.cancelled()
        assert after.status == 200
        assert pool.in_use == 0 and not pool.waiters
        assert server.most_open == 1

    run(scenario)


def test_a_forgotten_replica_loses_its_idle_connections_and_keeps_none_after() -> None:
    """DNS discovery dropped the replica: nothing stays open to it, in flight or idle."""
    release = asyncio.Event()

    async def reply(head: bytes) -> bytes:
        if head.startswith(b"POST /slow"):
            await release.wait()
        return answer(b"{}")

    async def scenario() -> None:
        async with Server(reply) as server:
            client = Http1Upstream()
            slow = asyncio.create_task(client.send("POST", server.url + "/slow", {}, b"", 2))
            await asyncio.sleep(0.05)
            await client.send("POST", server.url + "/x", {}, b"", 2)  # a second one, now idle
            assert server.open_now == 2
            client.forget(server.url)
            await asyncio.sleep(0.05)
            assert server.open_now == 1  # the idle one closed; the call in flight goes on
            release.set()
            assert (await slow).status == 200
            await asyncio.sleep(0.05)
            assert server.open_now == 0  # and its connection closed after the answer
            await client.send("POST", server.url + "/x", {}, b"", 2)  # back: a new pool
            await client.close()
        assert server.connections == 3

    run(scenario)


def test_an_ipv6_replica_gets_a_bracketed_host_header() -> None:
    head = gateway.http1._request_head("GET", "/v2/health/ready", ("fd00::5", 8001), {}, 0)

    assert head.startswith(b"GET /v2/health/ready HTTP/1.1\r\nhost: [fd00::5]:8001\r\n")

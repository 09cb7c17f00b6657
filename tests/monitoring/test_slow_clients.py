"""Slow clients cut off and malformed requests refused (monitoring/slow_clients.py), on a
real uvicorn server and sockets.

The server runs in a thread with a 0.3 s deadline; each test talks raw HTTP/1.1 to it, as a
slowloris client would, and reads what comes back until the server closes.
"""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
import uvicorn

from monitoring.slow_clients import guarded_protocol
from tests.e2e.processes import free_port

TIMEOUT_S = 0.3
#: Long enough for any deadline to have fired, short enough for a quick suite.
PATIENCE_S = 3.0


async def app(scope: Any, receive: Any, send: Any) -> None:
    """Reads the body, waits ``?sleep`` seconds, answers its length."""
    if scope["type"] != "http":
        return
    size, more = 0, True
    while more:
        message = await receive()
        if message["type"] == "http.disconnect":
            return
        size += len(message.get("body", b""))
        more = message.get("more_body", False)
    if scope["query_string"].startswith(b"sleep="):
        await asyncio.sleep(float(scope["query_string"][6:]))
    body = str(size).encode()
    headers = [(b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": body})


class Server:
    def __init__(self) -> None:
        self.timeouts: list[str] = []
        self.malformed: list[None] = []
        self.port = free_port()
        config = uvicorn.Config(
            app,
            port=self.port,
            http=guarded_protocol(
                TIMEOUT_S, self.timeouts.append, lambda: self.malformed.append(None)
            ),
            log_level="warning",
            timeout_keep_alive=5,
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> Server:
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started:
            assert time.monotonic() < deadline, "the test server did not start"
            time.sleep(0.01)
        return self

    def __exit__(self, *_: object) -> None:
        self.server.should_exit = True
        self.thread.join(5)

    def connect(self) -> socket.socket:
        client = socket.create_connection(("127.0.0.1", self.port))
        client.settimeout(PATIENCE_S)
        return client


@pytest.fixture(scope="module")
def server() -> Iterator[Server]:
    with Server() as running:
        yield running


@pytest.fixture(autouse=True)
def _fresh_counts(server: Server) -> None:
    server.timeouts.clear()
    server.malformed.clear()


def read_until_closed(client: socket.socket) -> bytes:
    """Everything the server sends until it closes; fails if it is still open after a while."""
    received = b""
    while chunk := client.recv(65536):
        received += chunk
    return received


def status_and_body(answer: bytes) -> tuple[int, dict[str, Any]]:
    head, _, body = answer.partition(b"\r\n\r\n")
    return int(head.split()[1]), json.loads(body)


def test_a_connection_that_sends_nothing_is_closed_without_an_answer(server: Server) -> None:
    with server.connect() as client:
        started = time.monotonic()
        assert read_until_closed(client) == b""
    assert time.monotonic() - started < 2
    assert server.timeouts == ["connection"]


@pytest.mark.parametrize(
    ("sent", "phase"),
    [
        (b"POST /v2/models/m/infer HTTP/1.1\r\nHost: x\r\n", "head"),
        (b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\nabc", "body"),
    ],
    ids=["head-never-ends", "body-shorter-than-its-length"],
)
def test_an_unfinished_request_gets_408_and_the_connection_is_closed(
    server: Server, sent: bytes, phase: str
) -> None:
    with server.connect() as client:
        client.sendall(sent)
        status, body = status_and_body(read_until_closed(client))
    assert status == 408
    assert body == {"error": "request not received whole within 0.3 s; connection closed"}
    assert server.timeouts == [phase]


def test_a_head_sent_a_byte_at_a_time_is_cut_off_though_bytes_keep_coming(
    server: Server,
) -> None:
    head = b"GET / HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"a" * 200
    with server.connect() as client:
        started = time.monotonic()
        with pytest.raises(OSError):  # the server closes while bytes are still being sent
            for byte in head:
                client.sendall(bytes([byte]))
                time.sleep(0.02)
    assert time.monotonic() - started < 2
    assert server.timeouts == ["head"]


def test_the_time_the_server_takes_to_answer_is_not_counted(server: Server) -> None:
    with server.connect() as client:
        client.sendall(b"POST /?sleep=0.6 HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc")
        answer = client.recv(65536)
    assert answer.startswith(b"HTTP/1.1 200 ")
    assert answer.endswith(b"\r\n\r\n3")
    assert server.timeouts == []


def test_a_kept_alive_connection_may_idle_longer_than_the_deadline(server: Server) -> None:
    request = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"
    with server.connect() as client:
        client.sendall(request)
        assert client.recv(65536).startswith(b"HTTP/1.1 200 ")
        time.sleep(2 * TIMEOUT_S)  # idle between requests: the keep-alive timeout's business
        client.sendall(request)
        assert client.recv(65536).startswith(b"HTTP/1.1 200 ")
    assert server.timeouts == []


@pytest.mark.parametrize(
    ("sent", "reason"),
    [
        (b"GARBAGE / HTTP/1.1\r\nHost: x\r\n\r\n", "Invalid method encountered"),
        (b"GET / HTTP/1.1\r\nHost: x\r\nNo Colon Here\r\n\r\n", "Invalid header token"),
        (
            b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: ten\r\n\r\n",
            "Invalid character in Content-Length",
        ),
        (b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03", "Invalid method encountered"),
    ],
    ids=["bad-method", "bad-header", "bad-content-length", "tls-to-plain-port"],
)
def test_bytes_that_are_not_http_get_a_json_400_naming_the_problem(
    server: Server, sent: bytes, reason: str
) -> None:
    with server.connect() as client:
        client.sendall(sent)
        answer = read_until_closed(client)
    status, body = status_and_body(answer)
    assert status == 400
    assert b"content-type: application/json" in answer.partition(b"\r\n\r\n")[0]
    assert body == {"error": f"malformed HTTP request: {reason}"}
    assert server.malformed == [None]
    assert server.timeouts == []

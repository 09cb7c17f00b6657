"""Answers held for one write (monitoring/head_with_body.py) on a real uvicorn server with
the guarded protocol both servers use, over raw sockets: what a client sees on the wire.

A HEAD answer has no body write to ride with, so its head must not wait for one; and a head
held when the slow-client deadline fires (the app answered before the body arrived) never
reached the client, who gets the 408 instead of a bare close.
"""

from __future__ import annotations

import asyncio
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
PATIENCE_S = 3.0


async def app(scope: Any, receive: Any, send: Any) -> None:
    """``/early``: answers at once, before reading the body, and never sends the body (as an
    app stuck between its head and its body); otherwise reads the body, answers ``ok``, or
    ``204``/``304`` without a body."""
    if scope["type"] != "http":
        return
    path = scope["path"]
    if path == "/early":
        headers = [(b"content-length", b"2")]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await asyncio.sleep(PATIENCE_S * 2)
        return
    more = True
    while more:
        message = await receive()
        if message["type"] == "http.disconnect":
            return
        more = message.get("more_body", False)
    if path in ("/204", "/304"):
        await send({"type": "http.response.start", "status": int(path[1:]), "headers": []})
        await send({"type": "http.response.body", "body": b""})
        return
    headers = [(b"content-length", b"2"), (b"x-path", path.encode())]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": b"ok"})


class Server:
    def __init__(self) -> None:
        self.port = free_port()
        config = uvicorn.Config(
            app,
            port=self.port,
            http=guarded_protocol(TIMEOUT_S, lambda _phase: None, lambda: None),
            log_level="critical",
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


def read_answers(client: socket.socket, count: int) -> bytes:
    """What arrives until ``count`` answers' heads are in (or the server goes quiet)."""
    received = b""
    try:
        while received.count(b"HTTP/1.1 ") < count or not received.endswith((b"\r\n\r\n", b"ok")):
            chunk = client.recv(65536)
            if not chunk:
                break
            received += chunk
    except TimeoutError:
        pass
    return received


def read_until_closed(client: socket.socket) -> bytes:
    received = b""
    try:
        while chunk := client.recv(65536):
            received += chunk
    except (TimeoutError, ConnectionResetError):
        pass
    return received


def request(method: str, path: str) -> bytes:
    return f"{method} {path} HTTP/1.1\r\nhost: x\r\n\r\n".encode()


def test_a_head_request_on_a_kept_alive_connection_gets_its_answer(server: Server) -> None:
    with server.connect() as client:
        client.sendall(request("HEAD", "/a"))
        answer = read_answers(client, 1)
    assert answer.startswith(b"HTTP/1.1 200 OK\r\n"), answer
    assert answer.endswith(b"\r\n\r\n")  # a head, no body


def test_pipelined_requests_are_answered_in_order_a_head_request_among_them(
    server: Server,
) -> None:
    with server.connect() as client:
        client.sendall(request("GET", "/1") + request("HEAD", "/2") + request("GET", "/3"))
        answers = read_answers(client, 3)
    paths = [line for line in answers.split(b"\r\n") if line.startswith(b"x-path")]
    assert paths == [b"x-path: /1", b"x-path: /2", b"x-path: /3"], answers
    assert answers.count(b"ok") == 2


@pytest.mark.parametrize("status", [204, 304])
def test_an_answer_without_a_body_goes_out_whole(server: Server, status: int) -> None:
    with server.connect() as client:
        client.sendall(request("GET", f"/{status}") + request("GET", "/after"))
        answers = read_answers(client, 2)
    assert answers.startswith(f"HTTP/1.1 {status} ".encode()), answers
    assert answers.endswith(b"x-path: /after\r\n\r\nok"), answers


def test_a_head_held_when_the_client_deadline_fires_gives_way_to_the_408(
    server: Server,
) -> None:
    """The app answered before the body came and then stalled: nothing of its answer was on
    the wire when the deadline fired, so the client is told why the connection closes."""
    with server.connect() as client:
        client.sendall(b"POST /early HTTP/1.1\r\nhost: x\r\ncontent-length: 10\r\n\r\n12")
        answer = read_until_closed(client)
    assert answer.startswith(b"HTTP/1.1 408 Request Timeout\r\n"), answer
    assert answer.count(b"HTTP/1.1") == 1, answer

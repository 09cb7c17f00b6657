"""An answer's head and body leave in one write (monitoring/head_with_body.py).

The protocol class both servers use (``guarded_protocol``) is driven here as uvicorn's own
tests drive theirs: bytes in through ``data_received``, and a transport that records every
``write``. Without ``HeadWithBody`` each answer below is two writes.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import uvicorn
from uvicorn.server import ServerState

from monitoring.head_with_body import JOIN_MAX_BYTES, HeadWithBody
from monitoring.slow_clients import guarded_protocol

App = Callable[[Any, Any, Any], Awaitable[None]]


class RecordingTransport(asyncio.Transport):
    def __init__(self) -> None:
        super().__init__()
        self.writes: list[bytes] = []
        self.closed = False

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self.writes.append(bytes(data))

    def close(self) -> None:
        self.closed = True

    def is_closing(self) -> bool:
        return self.closed

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return {"sockname": ("127.0.0.1", 8000), "peername": ("127.0.0.1", 50000)}.get(
            name, default
        )

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass


def answer(body: bytes, *, chunks: int = 1) -> App:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        await receive()
        headers = [(b"content-type", b"application/json")]
        if chunks == 1:
            headers.append((b"content-length", str(len(body)).encode()))
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        for index in range(chunks):
            more = index < chunks - 1
            await send({"type": "http.response.body", "body": body, "more_body": more})

    return app


def serve(app: App, request: bytes) -> RecordingTransport:
    """Feed ``request`` to a connection of the guarded protocol; what it wrote back."""

    async def exchange() -> RecordingTransport:
        config = uvicorn.Config(app, log_level="warning", access_log=False)
        config.load()
        protocol_class = guarded_protocol(60.0, lambda _phase: None, lambda: None)
        protocol: Any = protocol_class(config=config, server_state=ServerState(), app_state={})  # type: ignore[call-arg]
        transport = RecordingTransport()
        protocol.connection_made(transport)
        protocol.data_received(request)
        for _ in range(100):
            if protocol.cycle is not None and protocol.cycle.response_complete:
                break
            await asyncio.sleep(0.001)
        protocol.connection_lost(None)
        return transport

    return asyncio.run(exchange())


POST = b"POST /v2/models/m/infer HTTP/1.1\r\nhost: x\r\ncontent-length: 2\r\n\r\n{}"


def test_an_answer_with_content_length_is_one_write() -> None:
    app = answer(b'{"outputs": []}')
    transport = serve(app, POST)
    assert len(transport.writes) == 1, transport.writes
    (written,) = transport.writes
    assert written.startswith(b"HTTP/1.1 200 OK\r\n")
    assert written.endswith(b'\r\n\r\n{"outputs": []}')


def test_a_kept_alive_connection_answers_each_request_in_one_write() -> None:
    app = answer(b"{}")
    transport = serve(app, POST + POST)
    assert len(transport.writes) == 2, transport.writes
    assert all(write.startswith(b"HTTP/1.1 200") for write in transport.writes)


def test_a_streamed_answer_sends_its_head_with_the_first_chunk() -> None:
    app = answer(b"ab", chunks=3)
    transport = serve(app, POST)
    assert len(transport.writes) == 3, transport.writes
    assert transport.writes[0].startswith(b"HTTP/1.1 200 OK\r\n")
    assert transport.writes[0].endswith(b"transfer-encoding: chunked\r\n\r\n2\r\nab\r\n")
    assert transport.writes[2].endswith(b"0\r\n\r\n")


def test_100_continue_is_sent_before_the_app_answers() -> None:
    app = answer(b"{}")
    request = (
        b"POST /v2/models/m/infer HTTP/1.1\r\nhost: x\r\nexpect: 100-continue\r\n"
        b"content-length: 2\r\n\r\n{}"
    )
    transport = serve(app, request)
    assert transport.writes[0] == b"HTTP/1.1 100 Continue\r\n\r\n"
    assert len(transport.writes) == 2, transport.writes
    assert transport.writes[1].startswith(b"HTTP/1.1 200 OK\r\n")


def test_an_app_failing_after_the_head_still_sends_the_head_before_closing() -> None:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        await receive()
        headers = [(b"content-length", b"10")]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        raise RuntimeError("the app broke between its head and its body")

    transport = serve(app, POST)
    assert transport.closed
    assert len(transport.writes) == 1
    assert transport.writes[0].startswith(b"HTTP/1.1 200 OK\r\n")


class FakeCycle:
    response_started = False


def test_writes_before_the_response_starts_pass_through() -> None:
    transport, cycle = RecordingTransport(), FakeCycle()
    writer = HeadWithBody(transport, cycle)
    writer.write(b"interim")
    assert transport.writes == [b"interim"]
    cycle.response_started = True
    writer.write(b"head")
    assert transport.writes == [b"interim"]
    writer.write(b"body")
    writer.write(b"more")
    assert transport.writes == [b"interim", b"headbody", b"more"]
    assert writer.get_extra_info("peername") == ("127.0.0.1", 50000)


def test_a_large_body_follows_its_head_uncopied() -> None:
    transport, cycle = RecordingTransport(), FakeCycle()
    writer = HeadWithBody(transport, cycle)
    cycle.response_started = True
    writer.write(b"head")
    body = b"x" * (JOIN_MAX_BYTES + 1)
    writer.write(body)
    assert transport.writes == [b"head", body]

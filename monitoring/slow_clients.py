"""A deadline for clients to send their requests: slow ones (slowloris) are cut off; and
requests that are not HTTP refused in JSON, naming what the parser choked on.

uvicorn times a connection out only while it idles between two requests
(``timeout_keep_alive``). A client that connects and sends nothing, or sends a request's
head or body a few bytes at a time, keeps its connection, and a file descriptor and a
parser of the server, for as long as it likes; a few thousand such clients exhaust the
process.

``guarded_protocol(timeout_s, on_timeout)`` is uvicorn's httptools protocol with one more
timer. It is armed when a connection opens and when a request begins, and disarmed once the
request has arrived whole, so ``timeout_s`` bounds the time from connecting (or from the
first byte of a request on a kept-alive connection) to the request's last byte. The time a
server takes to answer is not counted. When the timer fires, ``on_timeout(phase)`` counts
it (``connection``: nothing was sent; ``head``: the request line and headers were not all
there; ``body``: the body was not), the client gets ``408 Request Timeout`` with a JSON
error unless nothing was sent or an answer had already started going out, and the
connection is closed. The gateway and the runtime both serve with it (``--client-timeout`` /
``listen.client_timeout_s``); docs/deploy.md says what it does not cover.

Bytes the HTTP parser cannot read (a bad method, header or chunk size; TLS sent to a plain
port) get uvicorn's ``400`` and a closed connection, as before, but with ``{"error":
"malformed HTTP request: <the parser's reason>"}`` as every other refusal of driftgate's
is worded, instead of uvicorn's plain "Invalid HTTP request received."; ``on_malformed()``
counts it.

Each request's answer leaves in one write, head and body together
(``monitoring.head_with_body``).
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Callable
from typing import Any, ClassVar

import msgspec
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from monitoring.head_with_body import HeadWithBody

#: The default: long enough for a 16 MiB body at about 2.5 Mbit/s.
DEFAULT_CLIENT_TIMEOUT_S = 60.0
#: What ``on_timeout`` is called with: how far the client had got.
PHASES = ("connection", "head", "body")


class _GuardedProtocol(HttpToolsProtocol):
    timeout_s: ClassVar[float] = DEFAULT_CLIENT_TIMEOUT_S

    @staticmethod
    def on_timeout(phase: str) -> None:
        """Replaced by ``guarded_protocol``."""

    @staticmethod
    def on_malformed() -> None:
        """Replaced by ``guarded_protocol``."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._deadline: asyncio.TimerHandle | None = None
        self._phase = "connection"

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm("connection")

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def on_message_begin(self) -> None:
        super().on_message_begin()
        if self._deadline is None:  # else the connection's deadline still runs
            self._arm("head")
        else:
            self._phase = "head"

    def on_headers_complete(self) -> None:
        self._phase = "body"
        existing_cycle = self.cycle
        super().on_headers_complete()
        cycle = self.cycle
        if cycle is not None and cycle is not existing_cycle:  # not an upgrade
            # The cycle uvicorn just made for this request writes its answer's head and
            # body in one send (``monitoring.head_with_body``).
            # uvicorn writes no body for HEAD: its head must not wait for one.
            hold = cycle.scope["method"] != "HEAD"
            cycle.transport = HeadWithBody(self.transport, cycle, hold=hold)  # type: ignore[assignment]

    def on_message_complete(self) -> None:
        self._disarm()
        super().on_message_complete()

    def send_400_response(self, msg: str) -> None:
        """uvicorn's answer to bytes its parser refused, worded as driftgate's errors are.

        uvicorn calls it only from the ``except httptools.HttpParserError`` of
        ``data_received``, so the exception it handles is the current one: its text names
        the problem ("Invalid header token", "Invalid character in Content-Length").
        """
        self.on_malformed()
        parser_error = sys.exc_info()[1]
        reason = str(parser_error) if parser_error is not None else msg
        self.transport.write(_answer(400, "Bad Request", f"malformed HTTP request: {reason}"))
        self.transport.close()

    def _arm(self, phase: str) -> None:
        self._phase = phase
        self._deadline = self.loop.call_later(self.timeout_s, self._expire)

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _expire(self) -> None:
        self._deadline = None
        if self.transport.is_closing():
            return
        self.on_timeout(self._phase)
        # Nothing more of the app's answer goes out; a head it held never did, so the 408
        # can still be the answer.
        writer: object = self.cycle.transport if self.cycle is not None else None
        held = isinstance(writer, HeadWithBody) and writer.abandon()
        answered = self._phase == "body" and self.cycle.response_started and not held
        if self._phase != "connection" and not answered:
            message = f"request not received whole within {self.timeout_s:g} s; connection closed"
            self.transport.write(_answer(408, "Request Timeout", message))
        self.transport.close()


def _answer(status: int, reason: str, error: str) -> bytes:
    """A whole HTTP/1.1 answer ``{"error": error}`` that closes the connection."""
    body = msgspec.json.encode({"error": error[:2000]})
    head = (
        f"HTTP/1.1 {status} {reason}\r\ncontent-type: application/json\r\n"
        f"content-length: {len(body)}\r\nconnection: close\r\n\r\n"
    )
    return head.encode("latin-1") + body


def guarded_protocol(
    timeout_s: float, on_timeout: Callable[[str], None], on_malformed: Callable[[], None]
) -> type[asyncio.Protocol]:
    """uvicorn's ``http=`` protocol class, cutting off clients slower than ``timeout_s`` and
    refusing bytes that are not HTTP in JSON (``on_timeout(phase)``, ``on_malformed()``)."""
    return type(
        "GuardedHttpToolsProtocol",
        (_GuardedProtocol,),
        {
            "timeout_s": timeout_s,
            "on_timeout": staticmethod(on_timeout),
            "on_malformed": staticmethod(on_malformed),
        },
    )

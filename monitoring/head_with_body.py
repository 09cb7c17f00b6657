"""An answer's head and its body in one ``send()``, instead of uvicorn's two.

uvicorn writes the status line and headers when the app sends ``http.response.start`` and
the body when it sends ``http.response.body``: two writes, and with ``TCP_NODELAY`` two TCP
segments. The receiver often wakes for the head alone, reads it, goes back to its event
loop and wakes again for the body. Measured with ``strace -c`` at one connection
(``bench/gateway_overhead.py``'s load): the gateway made 3.0 writes, 2.6 reads and 2.8
``epoll_pwait`` calls per proxied request, 1.6 of those reads for the runtime's answer.

``HeadWithBody`` stands between a request's ``RequestResponseCycle`` and the connection's
transport. It holds the first write made after the response started (uvicorn writes the
head there, in one piece) and sends it with the next write, the first body chunk. Writes
before the response starts (``100 Continue``) pass straight through, and so does the head of
an answer to ``HEAD``: uvicorn writes no body for it, and a held head would wait for the
connection to close (on a kept-alive connection, forever; pipelined answers behind it would
go out first). A ``204`` or ``304`` still has its (empty) body write. A held head is sent
before the connection closes, so an app that fails between the head and the body leaves
the client with what it got before. The cost: a streaming answer's head waits for its first
body chunk; neither server streams. A body over ``JOIN_MAX_BYTES`` is not copied to join
the head: it follows it.

``abandon()`` is for the slow-client deadline (``monitoring.slow_clients``), which closes the
connection itself: a head still held never reached the client, so it is dropped (the client
gets the 408 instead) and nothing the app writes afterwards goes out.
"""

from __future__ import annotations

import asyncio
from typing import Any, Protocol

#: Bodies up to this size are joined to the head; a larger one goes out after it, uncopied.
JOIN_MAX_BYTES = 64 * 1024


class _Cycle(Protocol):
    response_started: bool


class HeadWithBody:
    """The transport a ``RequestResponseCycle`` writes to (``write``, ``close``,
    ``is_closing``); anything else goes to the connection's transport."""

    __slots__ = ("_abandoned", "_cycle", "_head_seen", "_held", "_hold", "_transport")

    def __init__(self, transport: asyncio.Transport, cycle: _Cycle, *, hold: bool = True) -> None:
        """``hold``: False for an answer with no body write to come (to ``HEAD``)."""
        self._transport = transport
        self._cycle = cycle
        self._hold = hold
        self._head_seen = False
        self._held: bytes | None = None
        self._abandoned = False

    def write(self, data: bytes) -> None:
        if self._abandoned:
            return
        if not self._head_seen and self._cycle.response_started:
            self._head_seen = True
            if self._hold:
                self._held = data
                return
        if self._held is not None:
            held, self._held = self._held, None
            if len(data) > JOIN_MAX_BYTES:  # a copy would cost more than a second segment
                self._transport.write(held)
            else:
                data = held + data
        self._transport.write(data)

    def close(self) -> None:
        if self._held is not None:
            self._transport.write(self._held)
            self._held = None
        self._transport.close()

    def abandon(self) -> bool:
        """Stop writing this answer; whether its head was still held (never sent)."""
        held = self._held is not None
        self._held = None
        self._abandoned = True
        return held

    def is_closing(self) -> bool:
        return self._transport.is_closing()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)

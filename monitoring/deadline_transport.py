"""HTTP calls of a background job bounded as a whole: ``DeadlineTransport``, an httpx
transport (the explain job's calls to a runtime).

httpx's timeouts bound each network operation (connecting, one read), so an answer whose
headers or body trickle in, a few bytes within each read's timeout, never times out, and a
call blocked in a read sees no stop asked for meanwhile. Here a call gets ``call_s``
seconds, never past the time limit of the job run in progress (``run_time_left``), and is
watched while it is under way: every ``WATCH_EVERY_S`` a thread of its own ("http
deadline") looks whether its deadline has passed or the run was asked to stop
(``monitoring.job_run``) and, if so, shuts the call's connections down, so that a read
blocked on one returns at once. The sockets are learnt as connections open, from
httpcore's ``trace`` extension. The call then raises ``httpx.ReadTimeout`` past its
deadline and ``RunStopped`` on a stop, so that the run ends as stopped (or, past its time
limit, failed) rather than with a model version failed. A call ends within about
``WATCH_EVERY_S`` of either, unless it is still connecting: a socket is learnt only once
connected, so a connect is bounded by ``CONNECT_S`` instead (a replica that drops packets
would otherwise hold a stopping run for the whole call).

A transport serves one call at a time (a client used from one thread, as
``explain.client.RuntimePredict`` is): giving up on a call shuts every connection of the
transport down, idle pooled ones included, which the next call replaces. A call starting
ends the previous one, so that an answer never read to its end cannot, at its deadline,
shut the connection of a later call down.
"""

from __future__ import annotations

import contextlib
import contextvars
import socket
import threading
import time
import weakref
from collections.abc import Callable, Iterator
from typing import Any, Literal, cast

import httpx

from monitoring.job_run import RunStopped, check_stop, run_time_left, stop_requested

#: How often a call under way looks at its deadline and at the run's stop.
WATCH_EVERY_S = 0.1
#: The longest a connect may take (one SYN retransmission on Linux, and its answer): a
#: stop cannot cut a connect short, so it bounds how long a stop waits for one, under the
#: scheduler's 5 s.
CONNECT_S = 3.0
#: httpcore ``trace`` events that carry a connection's new network stream.
_CONNECTED = (".connect_tcp.complete", ".connect_unix_socket.complete", ".start_tls.complete")

Trace = Callable[[str, dict[str, Any]], object]
Reason = Literal["stop", "deadline"]


class DeadlineTransport(httpx.BaseTransport):
    """An httpx transport that bounds each call as a whole: ``call_s`` seconds, never past
    the time limit of the job run in progress, and no further than a stop of the run.

    A call with no time left raises ``httpx.ConnectTimeout``, one past its deadline
    ``httpx.ReadTimeout``, one under a run asked to stop ``RunStopped``.
    """

    def __init__(self, call_s: float, inner: httpx.BaseTransport | None = None) -> None:
        self.call_s = call_s
        self._inner = inner if inner is not None else httpx.HTTPTransport()
        self._sockets = _Sockets()
        self._current: _Call | None = None

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        check_stop()
        left = self.call_s
        run_left = run_time_left()
        if run_left is not None:
            left = min(left, run_left)
        if left <= 0:
            raise httpx.ConnectTimeout("the job run's time limit has passed", request=request)
        request.extensions["timeout"] = {
            "connect": min(left, CONNECT_S),
            **dict.fromkeys(("read", "write", "pool"), left),
        }
        if self._current is not None:
            self._current.end()
        call = self._current = _Call(self._sockets, request, left)
        call.watch()
        try:
            response = self._inner.handle_request(request)
        except BaseException as exc:
            call.end()
            if isinstance(exc, Exception):
                call.raise_if_given_up(exc)
            raise
        stream = cast(httpx.SyncByteStream, response.stream)
        return httpx.Response(
            response.status_code,
            headers=response.headers,
            stream=_DeadlineStream(stream, call),
            extensions=response.extensions,
        )

    def close(self) -> None:
        self._inner.close()


class _Sockets:
    """The sockets of a transport's connections, which a call given up on shuts down.

    One lock orders giving up on a call with the call's end: a call that has ended is not
    given up on, and the next one starts only once the sockets are shut down (an idle
    pooled connection shut down is replaced, not used)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._open: weakref.WeakSet[socket.socket] = weakref.WeakSet()

    def connected(self, sock: socket.socket, call: _Call) -> None:
        with self._lock:
            self._open.add(sock)
            if call.given_up is not None:  # opened since: no read may wait on it
                _shut(sock)

    def give_up(self, call: _Call, why: Reason) -> None:
        with self._lock:
            if call.ended.is_set():
                return
            call.given_up = why
            for sock in list(self._open):
                _shut(sock)

    def end(self, call: _Call) -> None:
        with self._lock:
            call.ended.set()


def _shut(sock: socket.socket) -> None:
    # socket.socket's own shutdown, also for a TLS socket (whose override would drop its
    # TLS state under the thread reading it). A socket closed meanwhile refuses, by object,
    # never touching a descriptor number reused since.
    with contextlib.suppress(OSError):
        socket.socket.shutdown(sock, socket.SHUT_RDWR)


class _Call:
    """One call under way: its deadline, and the thread that watches it until it ends."""

    def __init__(self, sockets: _Sockets, request: httpx.Request, seconds: float) -> None:
        self.seconds = seconds
        self.deadline = time.monotonic() + seconds
        #: Why the call was given up on; None while it may go on.
        self.given_up: Reason | None = None
        #: Set when the call has ended: its watching thread returns.
        self.ended = threading.Event()
        self._sockets = sockets
        self._request = request
        self._outer_trace = cast(Trace | None, request.extensions.get("trace"))
        request.extensions["trace"] = self._trace

    def watch(self) -> None:
        # The copied context is the run's: stop_requested() reads it in the watching thread.
        context = contextvars.copy_context()
        threading.Thread(
            target=context.run, args=(self._watch,), name="http deadline", daemon=True
        ).start()

    def end(self) -> None:
        self._sockets.end(self)

    def check(self) -> None:
        """Between two chunks of the body: raise what the call raises once past its
        deadline or once the run was asked to stop."""
        if self.given_up is None:
            if stop_requested():
                self._sockets.give_up(self, "stop")
            elif time.monotonic() > self.deadline:
                self._sockets.give_up(self, "deadline")
        self.raise_if_given_up(None)

    def raise_if_given_up(self, cause: BaseException | None) -> None:
        """Raise ``RunStopped`` or ``httpx.ReadTimeout`` (from ``cause``, the error of a
        read cut short) when the call was given up on."""
        if self.given_up is None:
            return
        self.end()
        if self.given_up == "stop":
            raise RunStopped(
                f"the job run was asked to stop during a call to {self._request.url}"
            ) from cause
        raise httpx.ReadTimeout(
            f"the answer did not arrive within {self.seconds:.3g} s", request=self._request
        ) from cause

    def _watch(self) -> None:
        while not self.ended.wait(min(WATCH_EVERY_S, max(self.deadline - time.monotonic(), 0))):
            if stop_requested():
                self._sockets.give_up(self, "stop")
                return
            if time.monotonic() >= self.deadline:
                self._sockets.give_up(self, "deadline")
                return

    def _trace(self, event: str, info: dict[str, Any]) -> None:
        if self._outer_trace is not None:
            self._outer_trace(event, info)
        if event.endswith(_CONNECTED):
            sock = info["return_value"].get_extra_info("socket")
            if isinstance(sock, socket.socket):
                self._sockets.connected(sock, self)


class _DeadlineStream(httpx.SyncByteStream):
    """The body of a call's answer, looked at between chunks; the call ends with it."""

    def __init__(self, stream: httpx.SyncByteStream, call: _Call) -> None:
        self._stream = stream
        self._call = call

    def __iter__(self) -> Iterator[bytes]:
        chunks = iter(self._stream)
        while True:
            try:
                chunk = next(chunks)
            except StopIteration:
                break
            except Exception as exc:  # a read the watching thread cut short, say
                self._call.raise_if_given_up(exc)
                raise
            self._call.check()
            yield chunk
        self._call.end()

    def close(self) -> None:
        self._call.end()
        self._stream.close()

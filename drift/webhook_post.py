"""One JSON POST bounded as a whole, for the drift alert webhook (``drift.alerts``).

urllib bounds each socket operation, not a call: a receiver that never answers, or answers
a byte at a time, holds it for as long as it likes. ``post_json`` therefore runs the call in
a thread of its own ("drift webhook") and waits for it up to ``timeout_s``, looking every
``STOP_POLL_S`` whether the job run in progress was asked to stop
(``monitoring.job_run``). A post given up on has its connection shut down (``_Post.cut``),
so its thread ends at once rather than at the receiver's pleasure (a trickling receiver
kept one thread per post given up on, without bound), and no late delivery follows what
the store records as not delivered. urllib's own HTTP and HTTPS handling is kept (proxies,
certificate checks); only the socket each connection opens is handed over to be cut.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import socket
import threading
import time
import urllib.request
from collections.abc import Callable
from typing import Any

from monitoring.job_run import stop_requested

#: How often a post in progress looks whether the job run was asked to stop.
STOP_POLL_S = 0.05


class PostStopped(Exception):
    """The post was given up on because the job run in progress was asked to stop."""


def post_json(url: str, payload: Any, timeout_s: float) -> None:
    """POST ``payload`` as JSON to ``url`` and read the whole answer within ``timeout_s``.

    Raises ``PostStopped`` once the job run is asked to stop, ``TimeoutError`` past
    ``timeout_s``, and what urllib raises for a refused connection or an error status.
    """
    request = urllib.request.Request(
        url,
        data=json.dumps(payload).encode("utf-8"),
        headers={"Content-Type": "application/json", "User-Agent": "driftgate"},
        method="POST",
    )
    done = threading.Event()
    failure: list[BaseException] = []
    post = _Post()

    def deliver() -> None:
        try:
            with post.opener.open(request, timeout=timeout_s) as response:
                response.read()
        except BaseException as exc:  # handed to the waiting thread
            failure.append(exc)
        finally:
            done.set()

    threading.Thread(target=deliver, name="drift webhook", daemon=True).start()
    give_up = time.monotonic() + timeout_s
    while not done.wait(STOP_POLL_S):
        if stop_requested():
            post.cut()
            raise PostStopped("the job run is stopping")
        if time.monotonic() >= give_up:
            post.cut()
            raise TimeoutError(f"no complete answer within {timeout_s:.3g} s")
    if failure:
        raise failure[0]


class _Post:
    """The connections of one post, which the thread giving up on it shuts down: a thread
    blocked reading from one returns at once, and one still connecting fails when done."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._sockets: list[socket.socket] = []
        self._cut = False
        self.opener = urllib.request.build_opener(_CuttableHandler(self))

    def connected(self, sock: socket.socket) -> None:
        with self._lock:
            if not self._cut:
                self._sockets.append(sock)
                return
        _shut(sock)
        raise ConnectionAbortedError("the post was given up on")

    def cut(self) -> None:
        with self._lock:
            self._cut = True
            sockets = list(self._sockets)
        for sock in sockets:
            _shut(sock)


def _shut(sock: socket.socket) -> None:
    # socket.socket's own shutdown, also for a TLS socket (whose override would drop its
    # TLS state under the thread reading it). A socket closed meanwhile refuses, by object,
    # never touching a descriptor number reused since.
    with contextlib.suppress(OSError):
        socket.socket.shutdown(sock, socket.SHUT_RDWR)


class _CuttableHandler(urllib.request.HTTPHandler, urllib.request.HTTPSHandler):
    """urllib's own HTTP and HTTPS handling (replacing the default handlers in
    ``build_opener``), each connection handing its socket to ``post`` once connected."""

    def __init__(self, post: _Post) -> None:
        urllib.request.HTTPSHandler.__init__(self)
        self._post = post

    def do_open(
        self,
        http_class: Callable[..., http.client.HTTPConnection],
        req: urllib.request.Request,
        **kw: Any,
    ) -> http.client.HTTPResponse:
        tls = isinstance(http_class, type) and issubclass(http_class, http.client.HTTPSConnection)
        cuttable = _TLSConnection if tls else _Connection
        post = self._post

        def connection(host: str, **kwargs: Any) -> http.client.HTTPConnection:
            con = cuttable(host, **kwargs)
            con.post = post
            return con

        return super().do_open(connection, req, **kw)


class _Connection(http.client.HTTPConnection):
    post: _Post

    def connect(self) -> None:
        super().connect()
        self.post.connected(self.sock)


class _TLSConnection(http.client.HTTPSConnection):
    post: _Post

    def connect(self) -> None:
        super().connect()  # the TLS handshake included: self.sock is the TLS socket
        self.post.connected(self.sock)

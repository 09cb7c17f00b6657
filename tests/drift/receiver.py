"""A real webhook receiver on a free loopback port, for the tests of the drift alerts."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class Receiver:
    """Keeps every JSON body posted to it; ``failing`` answers 503 and keeps nothing, as a
    receiver that is down."""

    def __init__(self) -> None:
        self.bodies: list[dict[str, Any]] = []
        self.failing = False
        received, receiver = self.bodies, self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers["Content-Length"])
                body = json.loads(self.rfile.read(length))
                if not receiver.failing:
                    received.append(body)
                self.send_response(503 if receiver.failing else 200)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def alerts(self) -> list[tuple[str, str]]:
        """(status, feature) of every alert received, in order."""
        return [
            (alert["status"], alert["labels"]["feature"])
            for body in self.bodies
            for alert in body["alerts"]
        ]


@contextmanager
def running_receiver() -> Iterator[Receiver]:
    receiver = Receiver()
    receiver.thread.start()
    try:
        yield receiver
    finally:
        receiver.server.shutdown()
        receiver.server.server_close()


class SlowReceiver:
    """A webhook receiver that takes each body and then does not answer (``trickle``: sends
    its answer's headers, then a byte of the body every 0.1 s) until ``release``; from
    then on it answers 200 at once."""

    def __init__(self, *, trickle: bool = False) -> None:
        self.bodies: list[dict[str, Any]] = []
        self.heard = threading.Event()  # a body arrived
        self.release = threading.Event()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers["Content-Length"])
                receiver.bodies.append(json.loads(self.rfile.read(length)))
                receiver.heard.set()
                if not trickle:
                    receiver.release.wait(60)
                    self.send_response(200)
                    self.end_headers()
                    return
                self.send_response(200)
                self.send_header("Content-Length", "100")
                self.end_headers()
                for _ in range(100):
                    if receiver.release.wait(0.1):
                        return
                    self.wfile.write(b" ")
                    self.wfile.flush()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)


@contextmanager
def running_slow_receiver(*, trickle: bool = False) -> Iterator[SlowReceiver]:
    receiver = SlowReceiver(trickle=trickle)
    receiver.thread.start()
    try:
        yield receiver
    finally:
        receiver.release.set()
        receiver.server.shutdown()
        receiver.server.server_close()

"""HTTP calls of a job run bounded as a whole, against a real server on a loopback port
whose answers trickle in: headers or body a byte every 50 ms, each read quick, the call
taking ``TRICKLE_S`` (or until the client hangs up)."""

from __future__ import annotations

import contextvars
import socket
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest

from monitoring import deadline_transport
from monitoring.deadline_transport import DeadlineTransport
from monitoring.job_run import RunLimit, RunStopped, bind_run

#: How long a trickling answer takes when nobody cuts it short.
TRICKLE_S = 5.0
#: How long ``/slow`` takes to answer.
SLOW_S = 0.4


class TricklingServer:
    """``/ok`` answers at once, ``/slow`` after ``SLOW_S``; ``/headers`` trickles its header
    lines, ``/body`` its body."""

    def __init__(self) -> None:
        self.release = threading.Event()  # ends every trickle (the test is over)
        self.trickling = threading.Event()  # an answer has started to trickle
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive: a second call reuses the connection

            def do_GET(self) -> None:
                try:
                    if self.path == "/headers":
                        self.wfile.write(b"HTTP/1.1 200 OK\r\nX-Slow: ")
                        self._trickle()
                        self.wfile.write(b"\r\nContent-Length: 2\r\n\r\nok")
                    elif self.path == "/body":
                        length = int(TRICKLE_S / 0.05)
                        self.wfile.write(
                            f"HTTP/1.1 200 OK\r\nContent-Length: {length}\r\n\r\n".encode()
                        )
                        self._trickle()
                    else:
                        if self.path == "/slow":
                            time.sleep(SLOW_S)
                        self.wfile.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
                except OSError:  # the client hung up
                    self.close_connection = True

            def _trickle(self) -> None:
                server.trickling.set()
                for _ in range(int(TRICKLE_S / 0.05)):
                    if server.release.wait(0.05):
                        raise ConnectionAbortedError("the test is over")
                    self.wfile.write(b"a")
                    self.wfile.flush()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)


@pytest.fixture
def server() -> Iterator[TricklingServer]:
    running = TricklingServer()
    running.thread.start()
    yield running
    running.release.set()
    running.server.shutdown()
    running.server.server_close()


def watching_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "http deadline"]


def test_a_call_whose_headers_trickle_in_ends_at_its_deadline(server: TricklingServer) -> None:
    """httpx's read timeout bounds each read: headers arriving a byte at a time held the
    call (and the explain run, and every job of the process) for as long as they came."""
    with httpx.Client(base_url=server.url, transport=DeadlineTransport(0.5)) as client:
        assert client.get("/ok").text == "ok"  # a pooled connection the next call reuses
        began = time.monotonic()
        with pytest.raises(httpx.ReadTimeout, match=r"within 0\.5 s"):
            client.get("/headers")
        assert time.monotonic() - began < 1.5
        assert client.get("/ok").text == "ok"  # the next call connects afresh
    deadline = time.monotonic() + 1
    while watching_threads() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert watching_threads() == []


def test_a_call_whose_body_trickles_in_ends_at_its_deadline(server: TricklingServer) -> None:
    with httpx.Client(base_url=server.url, transport=DeadlineTransport(0.5)) as client:
        began = time.monotonic()
        with pytest.raises(httpx.ReadTimeout):
            client.get("/body")
        assert time.monotonic() - began < 1.5


def in_a_run(limit: RunLimit, call: Callable[[], object]) -> Callable[[], object]:
    """``call`` as a scheduled job run under ``limit`` would make it."""

    def run() -> object:
        bind_run(limit)
        return call()

    return lambda: contextvars.copy_context().run(run)


@pytest.mark.parametrize("path", ["/headers", "/body"])
def test_a_stop_ends_a_call_under_way_as_a_stopped_run(server: TricklingServer, path: str) -> None:
    """A stop reached a call only once it returned: a trickling runtime held the explain run
    past the scheduler's stop, which left it running. The call raises what ``check_stop``
    raises, so the run counts as stopped, not as a model version that failed."""
    limit = RunLimit(3600)

    def stop_once_trickling() -> None:
        if server.trickling.wait(10):
            limit.cancel()  # as the scheduler's stop does, from its own thread

    with httpx.Client(base_url=server.url, transport=DeadlineTransport(60)) as client:
        call = in_a_run(limit, lambda: client.get(path))
        stopper = threading.Thread(target=stop_once_trickling)
        stopper.start()
        began = time.monotonic()
        with pytest.raises(RunStopped, match="asked to stop during a call"):
            call()
        stopper.join()
        assert time.monotonic() - began < 1.5
        later = RunLimit(3600)  # a later run: the client works again
        assert in_a_run(later, lambda: client.get("/ok").text)() == "ok"


def test_no_call_starts_once_the_run_was_asked_to_stop(server: TricklingServer) -> None:
    limit = RunLimit(3600)
    limit.cancel()
    client = httpx.Client(base_url=server.url, transport=DeadlineTransport(60))
    with client, pytest.raises(RunStopped):
        in_a_run(limit, lambda: client.get("/ok"))()


@pytest.fixture
def wedged_port() -> Iterator[int]:
    """A listener that never accepts, its one-slot accept queue full: the kernel drops
    further SYNs, so a connect hangs (a SIGSTOPped runtime whose backlog filled, a replica
    behind a firewall that drops packets)."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)
    port = listener.getsockname()[1]
    filler = socket.create_connection(("127.0.0.1", port))
    yield port
    filler.close()
    listener.close()


def test_a_stop_during_a_connect_that_hangs_ends_the_call_within_connect_s(
    wedged_port: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A socket is learnt only once connected, so a stop could not cut a hanging connect
    short: it ran to the whole call's time (here 30 s), past the scheduler's 5 s."""
    monkeypatch.setattr(deadline_transport, "CONNECT_S", 0.5)
    limit = RunLimit(3600)
    stopper = threading.Timer(0.2, limit.cancel)
    with httpx.Client(transport=DeadlineTransport(30)) as client:
        stopper.start()
        began = time.monotonic()
        with pytest.raises(RunStopped):
            in_a_run(limit, lambda: client.get(f"http://127.0.0.1:{wedged_port}/ok"))()
        assert time.monotonic() - began < 2.0


def test_an_answer_never_read_does_not_cut_a_later_call_short(server: TricklingServer) -> None:
    """The watcher of a streamed answer never read nor closed shut the transport's sockets
    at its deadline, under a later call still within its own time."""
    with httpx.Client(base_url=server.url, transport=DeadlineTransport(0.5)) as client:
        unread = client.send(client.build_request("GET", "/ok"), stream=True)
        assert unread.status_code == 200
        time.sleep(0.3)  # the unread answer's deadline passes during the next call
        assert client.get("/slow").text == "ok"

"""``driftgate gateway`` stops within ``listen.shutdown_timeout_s`` of SIGTERM, however long
the requests in flight would still take (a real process and a replica that never answers),
and says how many requests it cut off (``monitoring.in_flight``), as the runtime does."""

from __future__ import annotations

import json
import signal
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.e2e.processes import driftgate_process, free_port


@pytest.fixture()
def silent_replica() -> Iterator[str]:
    """A replica that is ready, then never answers an inference request."""
    server = socket.create_server(("127.0.0.1", 0))
    port = server.getsockname()[1]
    held: list[socket.socket] = []
    stop = threading.Event()

    def serve() -> None:
        server.settimeout(0.1)
        while not stop.is_set():
            try:
                connection, _ = server.accept()
            except TimeoutError:
                continue
            connection.settimeout(0.5)
            try:
                head = connection.recv(65536)
            except TimeoutError:
                head = b""
            if b"/v2/health/ready" in head:
                connection.sendall(
                    b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n"
                    b'content-length: 15\r\n\r\n{"ready": true}'
                )
            held.append(connection)  # an inference request: no answer, ever

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{port}"
    stop.set()
    thread.join(2)
    for connection in held:
        connection.close()
    server.close()


def test_sigterm_cuts_off_requests_in_flight_after_the_shutdown_timeout(
    tmp_path: Path, silent_replica: str
) -> None:
    """uvicorn waited for the requests in flight without a bound: a replica that never
    answered held the gateway's shutdown for the route's whole timeout (here 120 s). Then
    only uvicorn's "Cancel N running task(s)" said anything, counting tasks, not requests,
    and naming no setting."""
    port = free_port()
    config = {
        "listen": {"host": "127.0.0.1", "port": port, "shutdown_timeout_s": 1},
        "replicas": [silent_replica],
        "auth": {"enabled": False},
        "routes": {"iris": {"timeout_s": 120, "retries": 0}},
    }
    path = tmp_path / "gateway.yaml"
    path.write_text(json.dumps(config))  # JSON is YAML
    with driftgate_process(
        ["gateway", "--config", str(path)], port, log_path=tmp_path / "gateway.log"
    ) as gateway:
        answers: list[int | str] = []

        def call() -> None:
            try:
                answer = httpx.post(gateway.url + "/v2/models/iris/infer", json={}, timeout=60)
                answers.append(answer.status_code)
            except httpx.HTTPError as exc:
                answers.append(type(exc).__name__)

        caller = threading.Thread(target=call, daemon=True)
        caller.start()
        time.sleep(1.0)  # the request waits on the silent replica
        stopped = time.monotonic()
        gateway.process.send_signal(signal.SIGTERM)
        gateway.process.wait(timeout=15)
        took = time.monotonic() - stopped
        caller.join(5)

    assert took < 6, f"the gateway took {took:.1f} s to stop:\n{gateway.log()[-3000:]}"
    assert answers and answers[0] != 200  # cut off: the client does not wait 120 s either
    log = gateway.log()
    assert (
        "shutdown: 1 request was cut off unanswered, still running after the 1 s grace "
        "period (listen.shutdown_timeout_s)" in log
    ), log[-3000:]

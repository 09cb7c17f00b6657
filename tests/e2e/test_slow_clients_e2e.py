"""A real ``driftgate gateway`` cuts off a client that does not finish its request in time
(``listen.client_timeout_s``, monitoring/slow_clients.py) and refuses bytes that are not
HTTP in JSON, and counts both on /metrics, while requests sent whole go on being served."""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator

import httpx
import pytest
import yaml

from tests.e2e.processes import RunningProcess, driftgate_process, free_port

pytestmark = pytest.mark.e2e

PASSENGER = {"fare": 7, "sex": "male", "embarked": "Q", "pclass": "3", "age": 27}


@pytest.fixture(scope="module")
def gateway(
    runtime_server: RunningProcess, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RunningProcess]:
    home = tmp_path_factory.mktemp("slow-clients")
    port = free_port()
    config = {
        "listen": {"port": port, "client_timeout_s": 1},
        "replicas": [runtime_server.url],
        "auth": {"enabled": False},
    }
    (home / "gateway.yaml").write_text(yaml.safe_dump(config))
    args = ["gateway", "--config", str(home / "gateway.yaml")]
    with driftgate_process(args, port, log_path=home / "gateway.log") as running:
        yield running


def test_a_request_head_left_unfinished_gets_408_and_is_counted(gateway: RunningProcess) -> None:
    port = int(gateway.url.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port)) as client:
        client.settimeout(10)
        started = time.monotonic()
        client.sendall(b"POST /v1/models/titanic/eval HTTP/1.1\r\nHost: gateway\r\n")
        answer = b""
        while chunk := client.recv(65536):
            answer += chunk
    waited = time.monotonic() - started

    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 408 ")
    assert json.loads(body) == {"error": "request not received whole within 1 s; connection closed"}
    assert 0.9 < waited < 5
    metrics = httpx.get(f"{gateway.url}/metrics").text
    assert 'driftgate_client_timeouts_total{phase="head"} 1.0' in metrics
    served = httpx.post(f"{gateway.url}/v1/models/titanic/eval", json=PASSENGER)
    assert served.status_code == 200, served.text


def test_a_whole_request_on_a_connection_idle_past_the_deadline_is_served(
    gateway: RunningProcess,
) -> None:
    with httpx.Client(base_url=gateway.url) as client:  # one kept-alive connection
        assert client.post("/v1/models/titanic/eval", json=PASSENGER).status_code == 200
        time.sleep(1.5)  # past client_timeout_s, within uvicorn's keep-alive of 5 s
        assert client.post("/v1/models/titanic/eval", json=PASSENGER).status_code == 200


def test_a_request_that_is_not_http_gets_a_json_400_and_is_counted(
    gateway: RunningProcess,
) -> None:
    port = int(gateway.url.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port)) as client:
        client.settimeout(10)
        client.sendall(b"POST /v1/models/titanic/eval HTTP/1.1\r\nContent-Length: -1\r\n\r\n")
        answer = b""
        while chunk := client.recv(65536):
            answer += chunk

    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 400 ")
    assert json.loads(body) == {
        "error": "malformed HTTP request: Invalid character in Content-Length"
    }
    metrics = httpx.get(f"{gateway.url}/metrics").text
    assert "driftgate_malformed_requests_total 1.0" in metrics

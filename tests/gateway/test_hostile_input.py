"""What clients and admins send that no model name, policy or body should be: every answer
is a JSON 4xx naming the rule, nothing reaches a runtime that should not, and nothing breaks.

Names that no model can have (``-x``, ``a b``, ``☃``, a name with CR LF in it), route names
longer than a file name may be, policies nested thousands deep or holding thousands of arms,
and bodies nested deeper than any JSON decoder goes. Most tests run the real app in front of
the fake runtime (tests/gateway/fakes.py); the request-line test runs it on its real
HTTP/1.1 client against a socket server, which sees exactly the bytes a runtime would.
"""

from __future__ import annotations

import gzip
import json
import socketserver
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from litestar.testing import TestClient
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from gateway.app import create_app
from tests.gateway.fakes import Gateway, gateway_settings

BODY = {"inputs": [{"name": "x", "shape": [1], "datatype": "FP32", "data": [1.0]}]}
NAME_RULE = (
    "(letters, digits, '_', '-' and '.', starting with a letter or digit, at most 200 characters)"
)
TOO_DEEP = "nested too deeply (more than 32 levels of lists and mappings)"


def nested_json(depth: int) -> str:
    return "[" * depth + "]" * depth


def request_counts(gateway: Gateway) -> list[dict[str, str]]:
    return [
        {**labels, "count": str(value)}
        for labels, value in gateway.samples("driftgate_requests_total")
    ]


# --- names no model can have ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "name"),
    [
        ("/v1/models/-x/eval", "'-x'"),
        ("/v1/models/a%20b/eval", "'a b'"),
        ("/v2/models/%E2%98%83/infer", "'\u2603'"),
        ("/v2/models/x%0D%0AX-Injected:%201/infer", r"'x\r\nX-Injected: 1'"),
        (f"/v2/models/{'a' * 201}/infer", f"{'a' * 56!r}... (201 characters)"),
    ],
    ids=["leading-dash", "space", "snowman", "crlf", "too-long"],
)
def test_inference_on_a_name_no_model_can_have_is_an_unknown_model(
    start, runtime, path: str, name: str
) -> None:
    gateway = start()

    answer = gateway.client.post(path, json=BODY)

    assert answer.status_code == 404
    assert answer.json() == {
        "error": f"unknown model: {name} is not a valid route name {NAME_RULE}"
    }
    assert runtime.inference_calls() == []
    [counted] = request_counts(gateway)
    assert (counted["route"], counted["code"], counted["model"]) == ("_unknown", "404", "")


@pytest.mark.parametrize("name", ["-x", "%E2%98%83", "a" * 201])
def test_the_admin_api_answers_404_for_a_route_name_no_route_can_have(start, name: str) -> None:
    gateway = start()

    answer = gateway.client.get(f"/admin/routes/{name}")

    assert answer.status_code == 404
    assert answer.json()["error"].startswith("unknown route: ")
    assert answer.json()["error"].endswith(f"is not a valid route name {NAME_RULE}")


@pytest.mark.parametrize(
    ("path", "status", "error"),
    [
        ("/v2/models/%E2%98%83", 404, "unknown model: '\u2603' is not a valid model name"),
        ("/v2/models/a%20b/ready", 404, "unknown model: 'a b' is not a valid model name"),
        (
            "/v1/models/iris/versions/%E2%98%83/metadata",
            400,
            "'\u2603' is not a valid version",
        ),
    ],
)
def test_metadata_for_a_name_no_model_can_have_is_refused_before_any_replica_is_called(
    start, runtime, path: str, status: int, error: str
) -> None:
    gateway = start()

    answer = gateway.client.get(path)

    assert answer.status_code == status
    assert answer.json() == {"error": f"{error} {NAME_RULE}"}
    assert runtime.inference_calls() == []


class _RecordingRuntime(socketserver.ThreadingTCPServer):
    """A runtime on a loopback socket that answers every request ``200 {}`` and keeps the
    lines of each request head as they arrived."""

    daemon_threads = True
    heads: list[list[bytes]]


class _Recorder(socketserver.StreamRequestHandler):
    server: _RecordingRuntime

    def handle(self) -> None:
        while True:
            head = []
            while (line := self.rfile.readline()) not in (b"\r\n", b""):
                head.append(line.rstrip(b"\r\n"))
            if not head:
                return
            self.server.heads.append(head)
            self.wfile.write(b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n")
            self.wfile.write(b"content-length: 2\r\n\r\n{}")


@pytest.fixture
def socket_runtime() -> Iterator[_RecordingRuntime]:
    server = _RecordingRuntime(("127.0.0.1", 0), _Recorder)
    server.heads = []
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()
    thread.join()


def test_a_metadata_url_never_writes_lines_into_the_request_to_the_runtime(
    socket_runtime: _RecordingRuntime,
) -> None:
    port = socket_runtime.server_address[1]
    settings = gateway_settings(replicas=[f"127.0.0.1:{port}"])
    app = create_app(settings, span_exporter=InMemorySpanExporter())  # the real HTTP/1.1 client

    with TestClient(app) as client:
        injected = client.get("/v2/models/x%0D%0AX-Injected:%201")
        smuggled = client.get("/v2/models/iris%0D%0ATransfer-Encoding:%20chunked")
        snowman = client.get("/v1/models/iris/versions/%E2%98%83/metadata")
        honest = client.get("/v2/models/iris")

    assert [injected.status_code, smuggled.status_code, snowman.status_code] == [404, 404, 400]
    assert "unknown model: 'x\\r\\nX-Injected: 1'" in injected.json()["error"]
    assert honest.status_code == 200
    [head] = [head for head in socket_runtime.heads if b"/v2/health/" not in head[0]]
    assert head[0] == b"GET /v2/models/iris HTTP/1.1"  # exactly one request line, and its own
    assert not any(line.lower().startswith((b"x-injected", b"transfer-encoding")) for line in head)


# --- admin PUT: names, nesting, size and bounds ------------------------------------------------


def test_a_route_name_longer_than_200_characters_is_refused_and_nothing_is_written(
    start, tmp_path: Path
) -> None:
    routes = tmp_path / "routes"
    gateway = start(routes_dir=routes)

    refused = gateway.client.put(f"/admin/routes/n{'a' * 250}", json={})
    longest = gateway.client.put(f"/admin/routes/n{'a' * 199}", json={})

    assert refused.status_code == 400
    assert refused.json()["error"].endswith(f"is not a valid route name {NAME_RULE}")
    assert longest.status_code == 200
    written = [path.name for path in routes.iterdir() if path.suffix in (".yaml", ".tmp")]
    assert written == [f"n{'a' * 199}.yaml"]  # and no temporary file left behind


def test_puts_under_names_no_route_can_have_share_one_metric_label(start) -> None:
    gateway = start()

    for name in ("-x", "%E2%98%83", f"n{'a' * 250}"):
        assert gateway.client.put(f"/admin/routes/{name}", json={}).status_code == 400
    assert gateway.client.put("/admin/routes/tt", json={}).status_code == 200

    routes = sorted(
        labels["route"] for labels, _ in gateway.samples("driftgate_route_updates_total")
    )
    assert routes == ["_invalid", "tt"]
    assert (
        gateway.metric("driftgate_route_updates_total", route="_invalid", outcome="rejected") == 3
    )


@pytest.mark.parametrize("depth", [600, 5000], ids=["python-recursion", "msgspec-recursion"])
def test_a_policy_nested_too_deeply_is_a_400(start, depth: int) -> None:
    gateway = start()
    body = '{"shadow": ' + nested_json(depth) + "}"

    refused = gateway.client.put("/admin/routes/tt", content=body)

    assert refused.status_code == 400
    assert refused.json() == {
        "error": f"invalid route policy, nothing changed: routes.tt: {TOO_DEEP}"
    }
    assert gateway.metric("driftgate_route_updates_total", outcome="rejected") == 1


def test_a_policy_larger_than_1_mib_is_a_413_naming_the_size_and_the_limit(start) -> None:
    gateway = start()
    body = b'{"retries": 1' + b" " * (1 << 20) + b"}"

    refused = gateway.client.put("/admin/routes/iris", content=body)

    assert refused.status_code == 413
    assert refused.json() == {
        "error": f"route policy of {len(body)} bytes exceeds the limit of 1048576 bytes"
    }
    assert gateway.client.get("/admin/routes/iris").json()["configured"] is False


@pytest.mark.parametrize(
    ("policy", "error"),
    [
        ({"timeout_s": 1e-300}, "timeout_s: must be between 0.001 and 3600 seconds, got 1e-300"),
        (
            {"circuit_breaker": {"open_s": 1e300}},
            "circuit_breaker.open_s: must be between 0.001 and 3600 seconds, got 1e+300",
        ),
        (
            {
                "split": {
                    "arms": [
                        {"name": f"a{n}", "target": {"model": "iris"}, "weight": 1}
                        for n in range(1000)
                    ]
                }
            },
            "split.arms: at most 100 arms, got 1000",
        ),
    ],
    ids=["timeout", "open", "arms"],
)
def test_a_policy_past_a_bound_is_refused_naming_the_field_the_bound_and_the_value(
    start, policy: dict[str, Any], error: str
) -> None:
    gateway = start()

    refused = gateway.client.put("/admin/routes/iris", json=policy)

    assert refused.status_code == 400
    assert refused.json() == {
        "error": f"invalid route policy, nothing changed: routes.iris.{error}"
    }


# --- bodies on a route sticky by a body field ---------------------------------------------------


def test_a_body_nested_too_deeply_to_read_goes_to_the_runtime_without_a_sticky_key(
    start, runtime
) -> None:
    arms = [
        {"name": "control", "target": {"model": "iris", "version": "1"}, "weight": 1},
        {"name": "treatment", "target": {"model": "iris", "version": "2"}, "weight": 1},
    ]
    sticky = {"by": "field", "name": "pid"}
    gateway = start(routes={"iris": {"split": {"sticky": sticky, "arms": arms}}})
    body = '{"pid": 1, "x": ' + nested_json(5000) + "}"

    answer = gateway.client.post("/v1/models/iris/eval", content=body)

    assert answer.status_code == 200  # the runtime judges the body; the arm was drawn at random
    [call] = runtime.inference_calls()
    assert call.body == body.encode()


def test_a_compressed_body_keeps_its_sticky_field(start, runtime) -> None:
    """The field was looked for in the gzip bytes: no key, every request at random."""
    arms = [
        {"name": "control", "target": {"model": "iris", "version": "1"}, "weight": 1},
        {"name": "treatment", "target": {"model": "iris", "version": "2"}, "weight": 1},
    ]
    sticky = {"by": "field", "name": "pid"}
    gateway = start(routes={"iris": {"split": {"sticky": sticky, "arms": arms}}})
    encoded = {"Content-Encoding": "gzip", "Content-Type": "application/json"}

    for pid in range(8):
        plain = json.dumps({"pid": pid, "x": [1.0]}).encode()
        arms_seen = {
            gateway.client.post("/v1/models/iris/eval", content=body, headers=headers).headers[
                "X-Driftgate-Arm"
            ]
            for body, headers in [(plain, {}), (gzip.compress(plain), encoded)] * 3
        }
        assert len(arms_seen) == 1, (pid, arms_seen)


# --- names and versions a client makes up ---------------------------------------------------


def test_made_up_versions_add_no_series_and_no_breakers_past_the_bound(
    start, runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    """300 made-up versions made 600 series and 313 circuit breakers."""
    monkeypatch.setattr("gateway.circuit.MAX_BREAKERS", 8)
    gateway = start(routes={"iris": {"circuit_breaker": {"failures": 3, "open_s": 10}}})
    assert gateway.client.post("/v2/models/iris/infer", json=BODY).status_code == 200
    for index in range(40):
        made_up = gateway.client.post(f"/v2/models/iris/versions/v{index}/infer", json=BODY)
        assert made_up.status_code == 404
    versions = {labels["version"] for labels in request_counts(gateway)}
    assert versions == {"3", ""}  # the answered one, and none for the refusals
    circuits = gateway.client.get("/admin/replicas").json()["circuits"]
    assert len(circuits) <= 8


def test_made_up_model_names_share_the_unknown_route_label(start, runtime) -> None:
    gateway = start()
    for index in range(5):
        gateway.client.post(f"/v1/models/nosuch{index}/eval", json={"x": 1})
        gateway.client.post(f"/v1/models/nosuch{index}/versions/-1/eval", json={"x": 1})
    routes = {labels["route"] for labels in request_counts(gateway)}
    assert routes == {"_unknown"}


def test_a_served_model_keeps_its_route_label_when_its_replicas_fail(start, runtime) -> None:
    from tests.gateway.fakes import Refuse

    gateway = start()
    assert gateway.client.post("/v2/models/iris/infer", json=BODY).status_code == 200
    runtime.behave(Refuse())
    assert gateway.client.post("/v2/models/iris/infer", json=BODY).status_code == 503
    assert gateway.metric("driftgate_requests_total", route="iris", code="503") == 1

"""Headers a client can get wrong or abuse, refused the same way on both halves of the gateway.

The inference endpoint (gateway/inference.py) and the Litestar app behind it read headers
through different code; these tests pin down that a client cannot tell them apart: several
``Authorization`` headers are one 400 everywhere, an ``X-Request-ID`` that feedback could
never refer to is a 400, and a body over the limit is a 413 naming the size and the limit.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from litestar.testing import transport as litestar_transport

from gateway.auth import AuthConfig, mint_token
from gateway.inference import MAX_REQUEST_ID_CHARS
from gateway.settings import GatewaySettings
from tests.gateway.fakes import (
    REPLICAS,
    SECRET,
    FakeRuntime,
    GatewayFactory,
    gateway_factory,
)

AUTH = {"algorithm": "HS256", "secret": SECRET}
BODY = {"inputs": [{"name": "x", "shape": [1], "datatype": "FP32", "data": [1.0]}]}
TWO_HEADERS = (
    "request has 2 Authorization headers; send exactly one ('Authorization: Bearer <token>')"
)


@pytest.fixture
def runtime() -> FakeRuntime:
    return FakeRuntime(models={"iris": ["1"]})


@pytest.fixture
def start(runtime: FakeRuntime) -> Iterator[GatewayFactory]:
    with gateway_factory(runtime) as factory:
        yield factory


@pytest.fixture
def repeated_headers(monkeypatch: pytest.MonkeyPatch) -> None:
    """Send repeated headers as separate lines, as curl does: Litestar's TestClient folds
    them into one (``Bearer a, Bearer b``), which is another request."""
    fold = litestar_transport.TestClientTransport.parse_request

    def keep_lines(self: Any, request: httpx.Request) -> dict[str, object]:
        scope = fold(self, request)  # takes the host header out of request.headers
        host = scope["headers"][0]
        scope["headers"] = [host, *((name.lower(), value) for name, value in request.headers.raw)]
        return scope

    monkeypatch.setattr(litestar_transport.TestClientTransport, "parse_request", keep_lines)


def _bearer(*scopes: str) -> str:
    token = mint_token(AuthConfig.from_dict(AUTH), "app1", list(scopes), 600)
    return f"Bearer {token}"


def _with_log(store: Path, max_body_bytes: int) -> GatewaySettings:
    settings = GatewaySettings.from_dict(
        {
            "replicas": [f"http://{replica}" for replica in REPLICAS],
            "auth": {"enabled": False},
            "log": {"store": str(store)},
        }
    )
    return dataclasses.replace(settings, max_body_bytes=max_body_bytes)


# --- several Authorization headers ------------------------------------------------------------

ALL_SCOPES = ("predict", "admin", "read:logs", "feedback")


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("POST", "/v2/models/iris/infer"),  # the inference endpoint
        ("POST", "/v1/models/iris/eval"),
        ("GET", "/admin/routes"),  # Litestar
        ("POST", "/v1/feedback"),
        ("GET", "/v2/models/iris"),
        ("GET", "/reports/"),
    ],
)
@pytest.mark.parametrize("valid_first", [True, False])
@pytest.mark.usefixtures("repeated_headers")
def test_several_authorization_headers_are_refused_everywhere(
    start, runtime, method: str, path: str, valid_first: bool
) -> None:
    gateway = start(auth=AUTH)
    valid, garbage = _bearer(*ALL_SCOPES), "Bearer garbage"
    pair = [valid, garbage] if valid_first else [garbage, valid]
    headers = [("authorization", value) for value in pair]

    answer = gateway.client.request(method, path, json=BODY, headers=headers)

    assert answer.status_code == 400, answer.text
    assert answer.json() == {"error": TWO_HEADERS}
    assert answer.headers["www-authenticate"].startswith(
        'Bearer realm="driftgate", error="invalid_request"'
    )
    assert runtime.inference_calls() == []
    assert gateway.metric("driftgate_auth_failures_total", code="400") == 1


@pytest.mark.usefixtures("repeated_headers")
def test_the_inference_refusal_carries_a_request_id(start) -> None:
    gateway = start(auth=AUTH)
    headers = [("authorization", _bearer("predict")), ("authorization", _bearer("predict"))]
    headers.append(("x-request-id", "dup-1"))

    answer = gateway.client.post("/v2/models/iris/infer", json=BODY, headers=headers)

    assert answer.status_code == 400
    assert answer.headers["x-request-id"] == "dup-1"


@pytest.mark.usefixtures("repeated_headers")
def test_one_authorization_header_among_other_repeated_headers_is_served(start) -> None:
    gateway = start(auth=AUTH)
    headers = [("authorization", _bearer("predict")), ("accept", "*/*"), ("accept", "*/*")]

    assert gateway.client.post("/v2/models/iris/infer", json=BODY, headers=headers).is_success
    assert gateway.client.get("/v2/models/iris", headers=headers).is_success


@pytest.mark.usefixtures("repeated_headers")
def test_with_auth_off_authorization_headers_are_not_read(start) -> None:
    gateway = start()
    headers = [("authorization", "Bearer a"), ("authorization", "Bearer b")]

    assert gateway.client.post("/v2/models/iris/infer", json=BODY, headers=headers).is_success
    assert gateway.client.get("/admin/routes", headers=headers).is_success


# --- X-Request-ID -----------------------------------------------------------------------------


def test_a_request_id_at_the_feedback_limit_is_taken_and_echoed(start, runtime) -> None:
    gateway = start()
    request_id = "r" * MAX_REQUEST_ID_CHARS

    answer = gateway.client.post(
        "/v2/models/iris/infer", json=BODY, headers={"x-request-id": request_id}
    )

    assert answer.status_code == 200
    assert answer.headers["x-request-id"] == request_id
    [call] = runtime.inference_calls()
    assert call.request_id == request_id


def test_a_request_id_longer_than_feedback_takes_is_refused(start, runtime) -> None:
    gateway = start()
    request_id = "r" * 60_000

    answer = gateway.client.post(
        "/v2/models/iris/infer", json=BODY, headers={"x-request-id": request_id}
    )

    assert answer.status_code == 400
    assert answer.json() == {
        "error": "X-Request-ID of 60000 characters is longer than the limit of 256; send a "
        "shorter id, or none and use the one the gateway answers with"
    }
    assert len(answer.headers["x-request-id"]) == 32  # a fresh id, not the refused one
    assert runtime.inference_calls() == []


@pytest.mark.parametrize("request_id", ["two words", "tab\there", "caf\u00e9", "bell\x7f"])
def test_a_request_id_with_other_than_visible_ascii_is_refused(
    start, runtime, request_id: str
) -> None:
    gateway = start()

    answer = gateway.client.post(
        "/v1/models/iris/eval",
        json=BODY,
        headers=[(b"x-request-id", request_id.encode("latin-1"))],
    )

    assert answer.status_code == 400, answer.text
    assert answer.json()["error"].startswith(
        "X-Request-ID may hold only visible ASCII characters ('!' to '~', no spaces), got "
    )
    assert answer.headers["x-request-id"] != request_id
    assert runtime.inference_calls() == []


def test_without_a_request_id_the_gateway_makes_one(start, runtime) -> None:
    gateway = start()

    answer = gateway.client.post("/v2/models/iris/infer", json=BODY)

    assert answer.status_code == 200
    [call] = runtime.inference_calls()
    assert answer.headers["x-request-id"] == call.request_id
    assert len(call.request_id or "") == 32


# --- 413 on the Litestar side -----------------------------------------------------------------

LIMIT = 512


def test_a_declared_body_over_the_limit_names_its_size_and_the_limit(start, tmp_path) -> None:
    gateway = start(_with_log(tmp_path / "store", LIMIT))
    body = b'{"request_id": "a", "label": "' + b"x" * 1000 + b'"}'

    for path in ("/admin/routes/iris", "/v1/feedback"):
        method = "PUT" if path.startswith("/admin") else "POST"
        answer = gateway.client.request(method, path, content=body)

        assert answer.status_code == 413, (path, answer.text)
        assert answer.json() == {
            "error": f"request body of {len(body)} bytes exceeds the limit of {LIMIT} bytes"
        }


def test_a_streamed_body_over_the_limit_names_the_limit(start, tmp_path) -> None:
    gateway = start(_with_log(tmp_path / "store", LIMIT))

    def chunks() -> Iterator[bytes]:  # no Content-Length: chunked transfer encoding
        for _ in range(8):
            yield b"y" * 128

    answer = gateway.client.post("/v1/feedback", content=chunks())

    assert answer.status_code == 413
    assert answer.json() == {
        "error": f"request body too large: more than {LIMIT} bytes arrived; "
        f"the limit is {LIMIT} bytes"
    }

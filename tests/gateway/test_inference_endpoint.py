"""The HTTP edge of inference requests (gateway/inference.py): body limits, errors, spans.

Inference POSTs are answered as plain ASGI ahead of the Litestar app; these tests pin down
what that edge adds: a body limit that refuses before reading, the request id on every
answer, errors shaped like every other gateway error, and the SERVER span named after the
dialect's route template.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator

import pytest
from opentelemetry.trace import SpanKind

from tests.gateway.fakes import FakeRuntime, GatewayFactory, gateway_factory, gateway_settings

BODY = {"inputs": [{"name": "x", "shape": [1], "datatype": "FP32", "data": [1.0]}]}
LIMIT = 512


@pytest.fixture
def runtime() -> FakeRuntime:
    return FakeRuntime(models={"iris": ["1", "2"]}, labels={"iris": {"canary": "2"}})


@pytest.fixture
def start(runtime: FakeRuntime) -> Iterator[GatewayFactory]:
    with gateway_factory(runtime) as factory:
        yield factory


def small_limit(runtime: FakeRuntime) -> object:
    return dataclasses.replace(gateway_settings(replicas=runtime.replicas), max_body_bytes=LIMIT)


def test_a_body_over_the_limit_is_refused_with_413_before_any_replica_is_called(
    start, runtime
) -> None:
    gateway = start(small_limit(runtime))

    answer = gateway.client.post(
        "/v2/models/iris/infer", content=b"x" * (LIMIT + 1), headers={"X-Request-ID": "big-1"}
    )

    assert answer.status_code == 413
    assert answer.json() == {
        "error": f"request body of {LIMIT + 1} bytes exceeds the limit of {LIMIT} bytes"
    }
    assert answer.headers["x-request-id"] == "big-1"
    assert runtime.inference_calls() == []


def test_a_streamed_body_is_refused_as_soon_as_it_passes_the_limit(start, runtime) -> None:
    gateway = start(small_limit(runtime))

    def chunks() -> Iterator[bytes]:  # no Content-Length: chunked transfer encoding
        for _ in range(8):
            yield b"y" * 128

    answer = gateway.client.post("/v1/models/iris/eval", content=chunks())

    assert answer.status_code == 413
    assert f"the limit is {LIMIT} bytes" in answer.json()["error"]
    assert runtime.inference_calls() == []


def test_a_body_at_the_limit_is_forwarded_byte_for_byte(start, runtime) -> None:
    gateway = start(small_limit(runtime))
    body = b'{"x": "' + b"z" * (LIMIT - 9) + b'"}'
    assert len(body) == LIMIT

    answer = gateway.client.post("/v1/models/iris/eval", content=body)

    assert answer.status_code == 200
    [call] = runtime.inference_calls()
    assert call.body == body


def test_a_post_under_the_models_that_is_no_dialect_is_404(start) -> None:
    gateway = start()

    answer = gateway.client.post("/v1/models/iris:classify", json=BODY)

    assert answer.status_code == 404
    assert answer.json() == {"error": "no inference endpoint at /v1/models/iris:classify"}


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/v2/models/iris/infer"),
        ("PUT", "/v2/models/iris/versions/2/infer"),
        ("GET", "/v1/models/iris:predict"),
        ("DELETE", "/v1/models/iris/eval"),
        ("GET", "/v1/models/iris/explain"),
    ],
)
def test_another_method_on_an_inference_path_is_405_naming_it(
    start, runtime, method: str, path: str
) -> None:
    gateway = start()

    answer = gateway.client.request(method, path)

    assert answer.status_code == 405
    assert answer.json() == {"error": f"method {method} is not allowed on {path}; use POST"}
    assert answer.headers["allow"] == "OPTIONS, POST"
    assert gateway.client.options(path).status_code == 204
    assert runtime.inference_calls() == []


def test_an_unexpected_failure_is_a_500_without_a_stack_trace(start, monkeypatch) -> None:
    gateway = start()

    def broken_plan(*_: object) -> None:
        raise RuntimeError("secret internals")

    monkeypatch.setattr("gateway.proxy.plan_route", broken_plan)
    answer = gateway.client.post(
        "/v2/models/iris/infer", json=BODY, headers={"X-Request-ID": "oops-1"}
    )

    assert answer.status_code == 500
    assert answer.json() == {"error": "internal gateway error; see the gateway log"}
    assert answer.headers["x-request-id"] == "oops-1"


@pytest.mark.parametrize(
    ("path", "template"),
    [
        ("/v2/models/iris/infer", "/v2/models/{model}/infer"),
        ("/v2/models/iris/versions/2/infer", "/v2/models/{model}/versions/{version}/infer"),
        ("/v1/models/iris:predict", "/v1/models/{model}:predict"),
        ("/v1/models/iris/versions/2:predict", "/v1/models/{model}/versions/{version}:predict"),
        ("/v1/models/iris/labels/canary:predict", "/v1/models/{model}/labels/{label}:predict"),
        ("/v1/models/iris/eval", "/v1/models/{model}/eval"),
        ("/v1/models/iris/versions/1/eval", "/v1/models/{model}/versions/{version}/eval"),
    ],
)
def test_the_server_span_is_named_after_the_dialects_route_template(
    start, path: str, template: str
) -> None:
    gateway = start()

    answer = gateway.client.post(path, json=BODY)

    assert answer.status_code == 200
    [server] = [s for s in gateway.spans.get_finished_spans() if s.kind is SpanKind.SERVER]
    assert server.name == f"POST {template}"
    assert server.attributes is not None
    assert server.attributes["http.route"] == template
    assert server.attributes["http.response.status_code"] == 200


def test_latency_is_recorded_per_dialect(start) -> None:
    gateway = start()

    gateway.client.post("/v1/models/iris/eval", json=BODY)
    gateway.client.post("/v2/models/iris/infer", json=BODY)
    gateway.client.post("/v2/models/iris/infer", json=BODY)

    count = "driftgate_request_duration_seconds_count"
    assert gateway.metric(count, route="iris", dialect="eval") == 1
    assert gateway.metric(count, route="iris", dialect="v2") == 2
    assert gateway.metric(count, route="iris", dialect="explain") == 0


def test_error_messages_quoting_the_client_are_bounded() -> None:
    from gateway.errors import MAX_MESSAGE_CHARS, BadGatewayRequest

    message = BadGatewayRequest("x" * (MAX_MESSAGE_CHARS + 8000)).message
    assert message == "x" * MAX_MESSAGE_CHARS + "... (8000 more characters)"

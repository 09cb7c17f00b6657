"""The inference routes end to end in-process: addressing, headers, auth, traces and metrics.

A client calls the gateway in any of the runtime's three dialects; the gateway re-addresses
the path to the version the route picked and tells the client who answered. Replicas are
the fake runtime of tests/gateway/fakes.py; the gateway is the real app.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
from opentelemetry.trace import SpanKind

from gateway.auth import AuthConfig, mint_token
from tests.gateway.fakes import (
    SECRET,
    Fail,
    FakeRuntime,
    Gateway,
    GatewayFactory,
    Refuse,
    gateway_factory,
)

R1, R2 = "r1:9001", "r2:9002"
INFER = "/v2/models/iris/infer"
BODY = {"inputs": [{"name": "x", "shape": [1], "datatype": "FP32", "data": [1.0]}]}
AUTH = {"algorithm": "HS256", "secret": SECRET}


@pytest.fixture
def runtime() -> FakeRuntime:
    return FakeRuntime(models={"iris": ["1", "2", "3"]}, labels={"iris": {"canary": "2"}})


@pytest.fixture
def start(runtime: FakeRuntime) -> Iterator[GatewayFactory]:
    with gateway_factory(runtime) as factory:
        yield factory


def bearer(*scopes: str, subject: str = "app1") -> dict[str, str]:
    token = mint_token(AuthConfig.from_dict(AUTH), subject, scopes, 300)
    return {"Authorization": f"Bearer {token}"}


# --- addressing -----------------------------------------------------------------------------


def test_a_model_without_a_route_is_forwarded_to_its_default_version(start, runtime) -> None:
    gateway = start()

    answer = gateway.client.post(INFER, json=BODY)

    assert answer.status_code == 200
    [call] = runtime.inference_calls()
    assert call.path == INFER  # no version named: the runtime picks its default
    assert answer.json() == {"model": "iris", "version": "3", "outputs": {"class": ["setosa"]}}
    assert answer.headers["X-Driftgate-Model"] == "iris"
    assert answer.headers["X-Driftgate-Version"] == "3"  # read from the runtime's X-Model-*
    assert answer.headers["X-Driftgate-Role"] == "primary"
    assert answer.headers["X-Driftgate-Arm"] == "primary"


@pytest.mark.parametrize(
    ("client_path", "runtime_path"),
    [
        ("/v2/models/iris/infer", "/v2/models/iris/versions/2/infer"),
        ("/v1/models/iris:predict", "/v1/models/iris/versions/2:predict"),
        ("/v1/models/iris/eval", "/v1/models/iris/versions/2/eval"),
    ],
    ids=["open-inference", "tf-serving", "eval"],
)
def test_the_routes_version_is_written_into_the_path_in_every_dialect(
    start, runtime, client_path: str, runtime_path: str
) -> None:
    gateway = start(routes={"iris": {"primary": {"model": "iris", "version": "2"}}})
    body = b'{"instances": [{"x": 1.0}]}'

    answer = gateway.client.post(
        client_path, content=body, headers={"Content-Type": "application/json"}
    )

    assert answer.status_code == 200
    [call] = runtime.inference_calls()
    assert call.path == runtime_path
    assert call.body == body  # forwarded byte for byte
    assert call.headers["content-type"] == "application/json"
    assert answer.headers["X-Driftgate-Version"] == "2"


def test_a_route_may_answer_with_another_model(start, runtime) -> None:
    runtime.models["iris_onnx"] = ("7",)
    gateway = start(routes={"iris": {"primary": {"model": "iris_onnx"}}})

    answer = gateway.client.post("/v1/models/iris:predict", json={"instances": [[1.0]]})

    assert runtime.inference_calls()[0].path == "/v1/models/iris_onnx:predict"
    assert answer.headers["X-Driftgate-Model"] == "iris_onnx"
    assert answer.headers["X-Driftgate-Version"] == "7"


def test_a_labels_path_asks_for_that_version_and_skips_the_split(start, runtime) -> None:
    split = {
        "arms": [
            {"name": "control", "target": {"model": "iris", "version": "1"}, "weight": 1},
            {"name": "treatment", "target": {"model": "iris", "version": "3"}, "weight": 1},
        ]
    }
    gateway = start(routes={"iris": {"split": split}})

    answer = gateway.client.post("/v1/models/iris/labels/canary:predict", json={"instances": []})

    assert answer.status_code == 200
    assert runtime.inference_calls()[0].path == "/v1/models/iris/versions/canary:predict"
    assert answer.headers["X-Driftgate-Version"] == "2"  # the runtime resolved the label
    assert "X-Driftgate-Arm" not in answer.headers  # a version request has no arm


def test_a_version_that_is_not_a_valid_name_is_refused(start, runtime) -> None:
    gateway = start()

    answer = gateway.client.post("/v2/models/iris/versions/..%20x/infer", json=BODY)

    assert answer.status_code == 400
    assert "not a valid version" in answer.json()["error"]
    assert runtime.inference_calls() == []


def test_model_metadata_is_read_from_a_replica(start) -> None:
    gateway = start()

    answer = gateway.client.get("/v2/models/iris")

    assert answer.status_code == 200
    assert answer.json() == {"name": "iris", "versions": ["1", "2", "3"]}


# --- request ids ----------------------------------------------------------------------------


def test_a_request_id_is_generated_returned_and_forwarded_upstream(start, runtime) -> None:
    gateway = start()

    answer = gateway.client.post(INFER, json=BODY)

    request_id = answer.headers["X-Request-ID"]
    assert re.fullmatch(r"[0-9a-f]{32}", request_id)
    assert runtime.inference_calls()[0].request_id == request_id


def test_the_callers_request_id_is_echoed_and_forwarded_to_every_try(start, runtime) -> None:
    runtime.behave(Refuse(), replica=R1)
    gateway = start()

    answer = gateway.client.post(INFER, json=BODY, headers={"X-Request-ID": "order-42"})

    assert answer.headers["X-Request-ID"] == "order-42"
    assert [c.request_id for c in runtime.inference_calls()] == ["order-42", "order-42"]


def test_cookies_and_other_client_headers_stay_at_the_gateway(start, runtime) -> None:
    gateway = start()

    gateway.client.post(INFER, json=BODY, headers={"Cookie": "session=1", "X-Custom": "y"})

    forwarded = set(runtime.inference_calls()[0].headers)
    assert "cookie" not in forwarded
    assert "x-custom" not in forwarded


# --- auth -----------------------------------------------------------------------------------


def test_auth_disabled_serves_requests_without_a_token(start) -> None:
    gateway = start(auth={"enabled": False})

    assert gateway.client.post(INFER, json=BODY).status_code == 200


def test_no_token_is_401_with_a_bare_bearer_challenge(start, runtime) -> None:
    gateway = start(auth=AUTH)

    answer = gateway.client.post(INFER, json=BODY)

    assert answer.status_code == 401
    assert answer.headers["WWW-Authenticate"] == 'Bearer realm="driftgate"'
    assert "missing Authorization header" in answer.json()["error"]
    assert runtime.inference_calls() == []


def test_a_bad_token_is_401_invalid_token(start, runtime) -> None:
    gateway = start(auth=AUTH)
    other_key = AuthConfig.from_dict({"secret": "another-secret-of-32-bytes-000000"})
    forged = mint_token(other_key, "mallory", ["predict"], 300)

    answer = gateway.client.post(INFER, json=BODY, headers={"Authorization": f"Bearer {forged}"})

    assert answer.status_code == 401
    assert answer.headers["WWW-Authenticate"].startswith(
        'Bearer realm="driftgate", error="invalid_token"'
    )
    assert runtime.inference_calls() == []
    assert gateway.metric("driftgate_auth_failures_total", code="401") == 1


def test_a_token_for_another_model_is_403_insufficient_scope(start, runtime) -> None:
    gateway = start(auth=AUTH)

    answer = gateway.client.post(INFER, json=BODY, headers=bearer("predict:titanic"))

    assert answer.status_code == 403
    challenge = answer.headers["WWW-Authenticate"]
    assert 'error="insufficient_scope"' in challenge
    assert 'scope="predict:iris"' in challenge
    assert runtime.inference_calls() == []


@pytest.mark.parametrize("scope", ["predict:iris", "predict"])
def test_a_predict_scope_for_the_model_or_every_model_is_served(start, runtime, scope) -> None:
    gateway = start(auth=AUTH)

    answer = gateway.client.post(INFER, json=BODY, headers=bearer(scope))

    assert answer.status_code == 200
    assert "authorization" not in runtime.inference_calls()[0].headers  # stays at the gateway


def test_an_admin_token_cannot_predict(start) -> None:
    gateway = start(auth=AUTH)

    assert gateway.client.post(INFER, json=BODY, headers=bearer("admin")).status_code == 403


# --- tracing --------------------------------------------------------------------------------


def test_a_request_is_one_trace_down_to_each_upstream_try(start, runtime) -> None:
    runtime.behave(Refuse(), replica=R1)  # so that there is a retry to see
    gateway = start(auth=AUTH)

    gateway.client.post(INFER, json=BODY, headers=bearer("predict"))

    spans = gateway.spans.get_finished_spans()
    [server] = [s for s in spans if s.kind is SpanKind.SERVER]
    [auth] = [s for s in spans if s.name == "auth"]
    first_try, retry = [s for s in spans if s.kind is SpanKind.CLIENT]
    assert server.name == "POST /v2/models/{model}/infer"
    assert server.attributes is not None
    assert server.attributes["http.route"] == "/v2/models/{model}/infer"
    # The routing decision is on the SERVER span (no span of its own: it is pure and quick).
    assert server.attributes["driftgate.route"] == "iris"
    assert server.attributes["driftgate.arm"] == "primary"
    assert server.attributes["driftgate.targets"] == ("iris:",)
    assert {s.context.trace_id for s in spans} == {server.context.trace_id}
    assert auth.parent is not None and auth.parent.span_id == server.context.span_id
    assert first_try.attributes is not None and retry.attributes is not None
    assert first_try.attributes["server.address"] == "r1"
    assert first_try.attributes["error.type"] == "connect"
    assert "http.request.resend_count" not in first_try.attributes
    assert retry.attributes["server.address"] == "r2"
    assert retry.attributes["http.request.resend_count"] == 1
    assert retry.attributes["http.response.status_code"] == 200
    assert retry.attributes["url.full"] == "http://r2:9002/v2/models/iris/infer"
    # Each replica was told which trace and which try (span) it belongs to.
    sent = [str(call.traceparent).split("-")[1:3] for call in runtime.inference_calls()]
    assert sent == [
        [format(server.context.trace_id, "032x"), format(client.context.span_id, "016x")]
        for client in (first_try, retry)
    ]


def test_the_callers_traceparent_is_continued(start, runtime) -> None:
    trace_id = "4bf92f3577b34da6a3ce929d0e0e4736"
    gateway = start()

    gateway.client.post(
        INFER, json=BODY, headers={"traceparent": f"00-{trace_id}-00f067aa0ba902b7-01"}
    )

    traceparent = runtime.inference_calls()[0].traceparent
    assert traceparent is not None and traceparent.split("-")[1] == trace_id


# --- metrics --------------------------------------------------------------------------------


def request_counts(gateway: Gateway) -> list[dict[str, str]]:
    return [
        {**labels, "count": str(value)}
        for labels, value in gateway.samples("driftgate_requests_total")
    ]


def test_requests_are_counted_by_who_answered(start, runtime) -> None:
    runtime.behave(Fail(500), model="iris", version="2")
    gateway = start(
        routes={
            "iris": {
                "primary": {"model": "iris", "version": "2"},
                "fallback": [{"model": "iris"}],  # the runtime's default version: 3
            }
        }
    )

    gateway.client.post(INFER, json=BODY)
    gateway.client.post(INFER, json=BODY)

    assert request_counts(gateway) == [
        {
            "route": "iris",
            "model": "iris",
            "version": "3",  # from X-Model-Version: the route only said "default"
            "arm": "primary",
            "role": "fallback",
            "code": "200",
            "count": "2.0",
        }
    ]


def test_an_unknown_model_is_the_runtimes_404_counted_under_unknown(start, runtime) -> None:
    gateway = start()

    answer = gateway.client.post("/v2/models/no-such-model/infer", json=BODY)

    assert answer.status_code == 404
    assert answer.json() == {"error": "model 'no-such-model' is not in the repository"}
    [counted] = request_counts(gateway)
    assert counted["route"] == "_unknown"
    assert counted["code"] == "404"
    assert "no-such-model" not in counted.values()  # client-chosen names never become labels


def test_a_configured_route_keeps_its_name_even_on_404(start, runtime) -> None:
    gateway = start(routes={"titanic": {}})

    gateway.client.post("/v2/models/titanic/infer", json=BODY)

    [counted] = request_counts(gateway)
    assert counted["route"] == "titanic"
    assert counted["code"] == "404"

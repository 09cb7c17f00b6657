"""Shadows: mirrored after the client has its answer, never seen by it, compared when asked.

First the pure comparison of two answers in each dialect's JSON (``compare_outputs``,
``output_values``), then the whole gateway with a fake shadow that is slow, failing,
agreeing or disagreeing.
"""

from __future__ import annotations

import json
import time
from typing import Any

import pytest

from gateway.policy import Compare
from gateway.shadow import compare_outputs, output_values
from tests.gateway.fakes import (
    Answer,
    Fail,
    FakeRuntime,
    Gateway,
    GatewayFactory,
    Refuse,
    Slow,
    eventually,
    gateway_factory,
)

INFER = "/v2/models/iris/infer"
BODY = {"inputs": [{"name": "x", "shape": [1], "datatype": "FP32", "data": [1.0]}]}
#: Version 1 answers; every request is mirrored to version 2 and the "class" outputs compared.
SHADOW_V2: dict[str, Any] = {
    "target": {"model": "iris", "version": "2"},
    "compare": {"kind": "class", "output": "class"},
}
SHADOWED = {"iris": {"primary": {"model": "iris", "version": "1"}, "shadow": [SHADOW_V2]}}


def encode(answer: Any) -> bytes:
    return json.dumps(answer).encode()


# --- comparing two answers (pure) -------------------------------------------------------------


EVAL = encode({"model": "iris", "version": "1", "outputs": {"class": [["setosa"], ["virginica"]]}})
OPEN_INFERENCE = encode(
    {
        "model_name": "iris",
        "outputs": [
            {"name": "score", "datatype": "FP32", "shape": [2], "data": [0.1, 0.9]},
            {
                "name": "class",
                "datatype": "BYTES",
                "shape": [2, 1],
                "data": ["setosa", "virginica"],
            },
        ],
    }
)
TF_ROWS = encode({"predictions": [{"class": "setosa"}, {"class": "virginica"}]})
TF_COLUMNS = encode({"outputs": {"class": ["setosa", "virginica"]}})


@pytest.mark.parametrize(
    "body", [EVAL, OPEN_INFERENCE, TF_ROWS, TF_COLUMNS], ids=["eval", "oip", "tf-rows", "tf-cols"]
)
def test_output_values_reads_every_dialect_flattened(body: bytes) -> None:
    assert output_values(body, "class") == ["setosa", "virginica"]


def test_output_values_of_tf_serving_rows_without_names_are_the_rows() -> None:
    assert output_values(encode({"predictions": [[0.1, 0.9], [0.8, 0.2]]}), "any") == [
        0.1,
        0.9,
        0.8,
        0.2,
    ]


@pytest.mark.parametrize(
    "body",
    [
        b"\x00\x01binary tensor data",
        encode(["not", "an", "object"]),
        encode({"outputs": [{"name": "score", "data": [1]}]}),
        encode({"outputs": {"score": [1]}}),
        encode({"error": "model failed"}),
    ],
    ids=["binary", "not-an-object", "oip-without-it", "eval-without-it", "an-error"],
)
def test_output_values_is_none_when_the_output_cannot_be_read(body: bytes) -> None:
    assert output_values(body, "class") is None


def test_class_comparison_needs_equal_values_in_any_two_dialects() -> None:
    same_class = Compare(kind="class", output="class")
    flipped = encode({"outputs": {"class": ["virginica", "setosa"]}})

    assert compare_outputs(same_class, EVAL, OPEN_INFERENCE) is True
    assert compare_outputs(same_class, TF_ROWS, TF_COLUMNS) is True
    assert compare_outputs(same_class, EVAL, flipped) is False


def test_numeric_comparison_agrees_within_the_tolerance() -> None:
    close = Compare(kind="numeric", output="score", tolerance=0.05)
    primary = encode({"outputs": {"score": [0.10, 0.90]}})

    assert compare_outputs(close, primary, encode({"outputs": {"score": [0.14, 0.86]}})) is True
    assert compare_outputs(close, primary, encode({"outputs": {"score": [0.16, 0.90]}})) is False
    exact = Compare(kind="numeric", output="score")
    assert compare_outputs(exact, primary, encode({"outputs": {"score": [0.1, 0.9]}})) is True


@pytest.mark.parametrize(
    "shadow",
    [
        encode({"outputs": {"score": [0.1]}}),  # another number of values
        encode({"outputs": {"score": ["high", "low"]}}),  # not numbers
        b"not json",
    ],
    ids=["length", "not-numbers", "not-json"],
)
def test_answers_that_cannot_be_compared_are_neither_agree_nor_disagree(shadow: bytes) -> None:
    rule = Compare(kind="numeric", output="score", tolerance=0.1)
    assert compare_outputs(rule, encode({"outputs": {"score": [0.1, 0.9]}}), shadow) is None


# --- shadows through the gateway ---------------------------------------------------------------


def shadow_calls(runtime: FakeRuntime) -> list[str]:
    return [c.path for c in runtime.inference_calls() if "/versions/2/" in c.path]


def shadow_outcomes(gateway: Gateway) -> dict[str, float]:
    return {
        labels["outcome"]: value
        for labels, value in gateway.samples("driftgate_shadow_requests_total")
    }


def test_the_client_has_its_answer_before_a_slow_shadow_finishes(runtime) -> None:
    runtime.behave(Slow(2.0), model="iris", version="2")
    with gateway_factory(runtime) as own_lifetime:
        gateway = own_lifetime(routes=SHADOWED)

        started = time.perf_counter()
        answer = gateway.client.post(INFER, json=BODY, headers={"X-Request-ID": "req-1"})
        latency = time.perf_counter() - started

        assert answer.status_code == 200
        assert answer.json()["version"] == "1"
        assert latency < 1.0  # the shadow takes 2 s
        eventually(lambda: shadow_calls(runtime))  # it was sent, after the answer
        assert shadow_outcomes(gateway) == {}  # and is still running
        registry = gateway.state.registry
    # Shutting down waits for shadows in flight: it did finish, with the same request id.
    shadow = runtime.inference_calls()[-1]
    assert shadow.path == "/v2/models/iris/versions/2/infer"
    assert shadow.request_id == "req-1"
    labels = {"route": "iris", "model": "iris", "version": "2", "outcome": "ok"}
    assert registry.get_sample_value("driftgate_shadow_requests_total", labels) == 1


@pytest.mark.parametrize(
    ("failure", "outcome"),
    [(Fail(500), "error"), (Refuse(), "error"), (Slow(5.0), "timeout")],
    ids=["500", "refused", "timeout"],
)
def test_a_failing_shadow_never_reaches_the_client(start, runtime, failure, outcome) -> None:
    runtime.behave(failure, model="iris", version="2")
    gateway = start(routes={"iris": {**SHADOWED["iris"], "timeout_s": 0.3}})

    answer = gateway.client.post(INFER, json=BODY)

    assert answer.status_code == 200
    assert answer.headers["X-Driftgate-Version"] == "1"
    assert answer.headers["X-Driftgate-Role"] == "primary"
    eventually(lambda: shadow_outcomes(gateway) == {outcome: 1.0})
    assert gateway.metric("driftgate_shadow_comparisons_total") == 0
    assert gateway.metric("driftgate_requests_total", code="200") == 1


def test_agreement_is_counted_and_exported_as_a_ratio(
    start: GatewayFactory, runtime: FakeRuntime
) -> None:
    runtime.behave(Answer({"class": ["setosa"]}), model="iris")
    gateway = start(routes=SHADOWED)

    def compared() -> float:
        return gateway.metric("driftgate_shadow_comparisons_total")

    gateway.client.post(INFER, json=BODY)
    eventually(lambda: compared() == 1)
    runtime.behave(Answer({"class": ["virginica"]}), model="iris", version="2")
    for _ in range(3):
        gateway.client.post(INFER, json=BODY)
    eventually(lambda: compared() == 4)

    shadow = {"route": "iris", "model": "iris", "version": "2"}
    assert gateway.metric("driftgate_shadow_comparisons_total", **shadow, result="agree") == 1
    assert gateway.metric("driftgate_shadow_comparisons_total", **shadow, result="disagree") == 3
    assert gateway.samples("driftgate_shadow_agreement_ratio") == [(shadow, 0.25)]


def test_a_shadow_percent_of_zero_mirrors_nothing(start, runtime) -> None:
    gateway = start(routes={"iris": {**SHADOWED["iris"], "shadow": [{**SHADOW_V2, "percent": 0}]}})

    for _ in range(5):
        gateway.client.post(INFER, json=BODY)

    assert shadow_calls(runtime) == []

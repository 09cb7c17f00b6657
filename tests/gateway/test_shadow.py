"""Shadows: mirrored after the client has its answer, never seen by it, compared when asked.

First the pure comparison of two answers in each dialect's JSON (``compare_outputs``,
``output_values``), then the whole gateway with a fake shadow that is slow, failing,
agreeing or disagreeing.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from gateway.policy import Compare
from gateway.shadow import MAX_IN_FLIGHT, compare_outputs, output_values
from gateway.upstream import UpstreamResponse
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


def compare(rule: Compare, primary: bytes, shadow: bytes) -> bool | None:
    """``compare_outputs`` of two JSON answers (200, no headers)."""
    return compare_outputs(
        rule, UpstreamResponse(200, {}, primary), UpstreamResponse(200, {}, shadow)
    )


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

    assert compare(same_class, EVAL, OPEN_INFERENCE) is True
    assert compare(same_class, TF_ROWS, TF_COLUMNS) is True
    assert compare(same_class, EVAL, flipped) is False


def test_numeric_comparison_agrees_within_the_tolerance() -> None:
    close = Compare(kind="numeric", output="score", tolerance=0.05)
    primary = encode({"outputs": {"score": [0.10, 0.90]}})

    assert compare(close, primary, encode({"outputs": {"score": [0.14, 0.86]}})) is True
    assert compare(close, primary, encode({"outputs": {"score": [0.16, 0.90]}})) is False
    exact = Compare(kind="numeric", output="score")
    assert compare(exact, primary, encode({"outputs": {"score": [0.1, 0.9]}})) is True


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
    assert compare(rule, encode({"outputs": {"score": [0.1, 0.9]}}), shadow) is None


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


# --- answers that are hard to compare ----------------------------------------------------------


def test_tf_serving_rows_without_the_output_cannot_be_compared() -> None:
    """Rows by output name that lack the compared output read as ``[None, ...]``: a typo in
    ``compare.output`` agreed 100%, and a shadow naming its outputs otherwise disagreed."""
    rows = encode({"predictions": [{"label": 1, "p": 0.3}, {"label": 0, "p": 0.8}]})
    named = encode({"predictions": [{"survived": 1}, {"survived": 0}]})
    rule = Compare(kind="class", output="survived")

    assert output_values(rows, "survived") is None
    assert compare(rule, rows, rows) is None
    assert compare(rule, named, rows) is None


def test_tf_serving_columns_of_a_single_output_model_are_the_bare_value() -> None:
    """The columnar answer of a one-output model is ``{"outputs": <value>}``, like its rows
    are bare values; it was read as an Open Inference Protocol list and never compared."""
    rule = Compare(kind="class", output="survived")
    columns = encode({"outputs": [[1], [0]]})

    assert output_values(columns, "survived") == [1, 0]
    assert output_values(encode({"outputs": 0.25}), "probability") == [0.25]
    assert compare(rule, columns, encode({"predictions": [1, 0]})) is True
    assert compare(rule, columns, encode({"outputs": [[1], [1]]})) is False


def test_a_binary_value_is_a_value_not_a_row_by_name() -> None:
    binary = encode({"predictions": [{"b64": "AAE="}, {"b64": "AQA="}]})
    assert output_values(binary, "image_bytes") == [{"b64": "AAE="}, {"b64": "AQA="}]


def test_a_nan_where_the_other_has_a_number_disagrees() -> None:
    """The runtime writes NaN as null: a shadow answering NaN where the primary has a number
    was left uncounted instead of disagreeing."""
    rule = Compare(kind="numeric", output="probability", tolerance=0.1)
    numbers = encode({"outputs": {"probability": [0.5, 0.4]}})
    one_nan = encode({"outputs": {"probability": [0.5, None]}})

    assert compare(rule, numbers, one_nan) is False
    assert compare(rule, one_nan, numbers) is False
    assert compare(rule, one_nan, one_nan) is True


def test_a_class_is_the_same_whether_written_as_a_number_or_a_string() -> None:
    """One model's INT64 class 1 and another's BYTES class "1" agree (as sticky keys do)."""
    rule = Compare(kind="class", output="survived")
    ints = encode({"outputs": {"survived": [[1], [0]]}})

    assert compare(rule, ints, encode({"outputs": {"survived": ["1", "0"]}})) is True
    assert compare(rule, ints, encode({"outputs": {"survived": [1.0, 0.0]}})) is True
    assert compare(rule, ints, encode({"outputs": {"survived": ["1", "1"]}})) is False
    assert compare(rule, ints, encode({"outputs": {"survived": ["1.0", "0"]}})) is False


def binary_answer(score: list[float], classes: list[str]) -> UpstreamResponse:
    """An OIP answer with both outputs in binary tensor data (tritonclient's default when a
    request names no output), its JSON length in lowercase as Http1Upstream keeps names."""
    texts = [c.encode() for c in classes]
    chunks = [
        np.asarray(score, dtype="<f4").tobytes(),
        b"".join(len(t).to_bytes(4, "little") + t for t in texts),
    ]
    head = json.dumps(
        {
            "model_name": "iris",
            "outputs": [
                {"name": "score", "datatype": "FP32", "shape": [len(score)],
                 "parameters": {"binary_data_size": len(chunks[0])}},
                {"name": "class", "datatype": "BYTES", "shape": [len(classes), 1],
                 "parameters": {"binary_data_size": len(chunks[1])}},
            ],
        }
    ).encode()  # fmt: skip
    headers = {"inference-header-content-length": str(len(head))}
    return UpstreamResponse(200, headers, head + b"".join(chunks))


def test_binary_answers_are_compared_as_their_json_form_would_be() -> None:
    """A binary answer was not JSON, so no shadow of a tritonclient caller was ever compared."""
    same_class = Compare(kind="class", output="class")
    close = Compare(kind="numeric", output="score", tolerance=0.05)
    primary = binary_answer([0.1, 0.9], ["setosa", "virginica"])

    agreeing = binary_answer([0.12, float("nan")], ["setosa", "virginica"])
    assert compare_outputs(same_class, primary, agreeing) is True
    assert compare_outputs(close, primary, agreeing) is False  # NaN reads null: disagrees
    flipped = binary_answer([0.1, 0.9], ["virginica", "virginica"])
    assert compare_outputs(same_class, primary, flipped) is False
    json_answer = UpstreamResponse(200, {}, OPEN_INFERENCE)
    assert compare_outputs(same_class, json_answer, primary) is True
    assert compare_outputs(close, primary, json_answer) is True


def test_a_binary_answer_that_does_not_add_up_cannot_be_compared() -> None:
    rule = Compare(kind="class", output="class")
    good = binary_answer([0.1, 0.9], ["setosa", "virginica"])
    cut = UpstreamResponse(200, good.headers, good.body[:-3])
    no_length = UpstreamResponse(200, {}, good.body)
    assert compare_outputs(rule, good, cut) is None
    assert compare_outputs(rule, no_length, good) is None


def oip_answer(outputs: list[dict[str, Any]], binary: bytes) -> UpstreamResponse:
    head = json.dumps({"outputs": outputs}).encode()
    headers = {"inference-header-content-length": str(len(head))}
    return UpstreamResponse(200, headers, head + binary)


def fp32(name: str, **fields: Any) -> dict[str, Any]:
    return {"name": name, "datatype": "FP32", "shape": [1], **fields}


def test_binary_data_that_does_not_add_up_is_not_compared_on_any_output() -> None:
    """Cut after the compared output, or with an earlier size that is not a size, the
    binary data still gave the compared output values (the earlier one's, shifted)."""
    score = Compare(kind="numeric", output="score")
    good = oip_answer([fp32("score", parameters={"binary_data_size": 4})], bytes(4))
    sized = {"parameters": {"binary_data_size": 4}}
    cut = oip_answer([fp32("score", **sized), fp32("class", **sized)], bytes(5))
    float_size = {"parameters": {"binary_data_size": 4.0}}
    shifted = oip_answer([fp32("class", **float_size), fp32("score", **sized)], bytes(8))
    both = oip_answer([fp32("score", data=[0.0], **sized)], bytes(4))

    assert compare_outputs(score, good, good) is True
    assert compare_outputs(score, good, cut) is None
    assert compare_outputs(score, good, shifted) is None
    assert compare_outputs(score, good, both) is None


@pytest.mark.parametrize(
    "hostile",
    [
        pytest.param(fp32("score", parameters=[1]), id="parameters-a-list"),
        pytest.param(fp32("score", parameters="binary"), id="parameters-a-string"),
        pytest.param(fp32("score"), id="no-data"),
        pytest.param(
            fp32("score", shape=[2**62] * 2_000, parameters={"binary_data_size": 4}),
            id="a-product-too-long-to-print",
        ),
        pytest.param(
            fp32("score", shape=[0, 10**30], parameters={"binary_data_size": 0}), id="zero"
        ),
        pytest.param(
            fp32("score", shape=[1] * 100, parameters={"binary_data_size": 4}), id="rank-100"
        ),
    ],
)
def test_a_hostile_answer_is_not_compared_and_raises_nothing(hostile: dict[str, Any]) -> None:
    """A shape of 2,000 dimensions of 2**62 raised ValueError (an integer too long to print)
    out of the shadow task; ``parameters`` that were not an object raised AttributeError."""
    score = Compare(kind="numeric", output="score")
    good = oip_answer([fp32("score", parameters={"binary_data_size": 4})], bytes(4))
    parameters = hostile.get("parameters")
    size = parameters["binary_data_size"] if isinstance(parameters, dict) else 0
    answer = oip_answer([hostile], bytes(size))

    assert compare_outputs(score, good, answer) is None
    assert compare_outputs(score, answer, good) is None


def test_no_values_on_either_side_is_nothing_compared() -> None:
    rule = Compare(kind="class", output="survived")
    empty = encode({"outputs": {"survived": []}})
    assert compare(rule, empty, empty) is None


def test_an_answer_nested_deeper_than_python_recurses_cannot_be_compared() -> None:
    deep = b'{"outputs": {"x": ' + b"[" * 5000 + b"1" + b"]" * 5000 + b"}}"
    assert output_values(deep, "x") in (None, [1])


# --- shadows under load -----------------------------------------------------------------------


def test_shadows_in_flight_are_bounded_and_the_dropped_ones_counted(start, runtime) -> None:
    """A slow shadow target made shadow tasks pile up without bound, each holding its
    request, and they took the replicas' connections from the answers clients wait for."""
    runtime.behave(Slow(5.0), model="iris", version="2")
    gateway = start(routes={"iris": {**SHADOWED["iris"], "timeout_s": 3.0}})
    gateway.state.shadows.max_in_flight = 2

    answers = [gateway.client.post(INFER, json=BODY) for _ in range(6)]

    assert [answer.status_code for answer in answers] == [200] * 6
    assert shadow_outcomes(gateway) == {"dropped": 4.0}
    assert len(shadow_calls(runtime)) == 2
    eventually(lambda: shadow_outcomes(gateway) == {"dropped": 4.0, "timeout": 2.0}, 6.0)
    # Once the slow ones are done, shadows go out again.
    runtime.behave(Answer(), model="iris", version="2")
    gateway.client.post(INFER, json=BODY)
    eventually(lambda: shadow_outcomes(gateway).get("ok") == 1.0)


def test_the_documented_bound_is_the_bound() -> None:
    routing = (Path(__file__).parents[2] / "docs" / "routing.md").read_text()
    assert f"at most {MAX_IN_FLIGHT} shadow calls at once" in routing


# --- shadows after a fallback answered --------------------------------------------------------


#: Version 1 answers, version 3 backs it up; version 2 is mirrored and compared.
WITH_FALLBACK: dict[str, Any] = {
    "iris": {**SHADOWED["iris"], "fallback": [{"model": "iris", "version": "3"}], "retries": 0}
}


def test_a_shadow_is_compared_with_the_primarys_answer_only(start, runtime) -> None:
    """After a fallback answered, the shadow was compared with the fallback's answer: a
    shadow that agrees with the primary read as disagreeing (or the other way round)."""
    runtime.behave(Fail(500), model="iris", version="1")
    runtime.behave(Answer({"class": ["virginica"]}), model="iris", version="3")
    gateway = start(routes=WITH_FALLBACK)

    answer = gateway.client.post(INFER, json=BODY)

    assert answer.headers["X-Driftgate-Role"] == "fallback"
    eventually(lambda: shadow_outcomes(gateway) == {"ok": 1.0})  # still mirrored
    assert gateway.metric("driftgate_shadow_comparisons_total") == 0
    # Once the primary answers again, it is compared again.
    runtime.behave(Answer(), model="iris", version="1")
    gateway.client.post(INFER, json=BODY)
    eventually(lambda: gateway.metric("driftgate_shadow_comparisons_total", result="agree") == 1)


def test_a_target_that_answered_as_fallback_is_not_mirrored_to_as_well(start, runtime) -> None:
    """A fallback that is also a shadow got the same request twice: once to answer, once
    as its shadow."""
    runtime.behave(Fail(500), model="iris", version="1")
    routes = {"iris": {**SHADOWED["iris"], "fallback": [SHADOW_V2["target"]], "retries": 0}}
    gateway = start(routes=routes)

    answer = gateway.client.post(INFER, json=BODY, headers={"X-Request-ID": "once"})

    assert answer.headers["X-Driftgate-Version"] == "2"
    assert answer.headers["X-Driftgate-Role"] == "fallback"
    time.sleep(0.2)  # a shadow would have been sent by now
    assert len(shadow_calls(runtime)) == 1  # the fallback's call, no second one
    assert shadow_outcomes(gateway) == {}


def test_a_target_that_failed_as_fallback_is_not_mirrored_to_either(start, runtime) -> None:
    runtime.behave(Fail(500), model="iris", version="1")
    runtime.behave(Fail(500), model="iris", version="2")
    fallbacks = [SHADOW_V2["target"], {"model": "iris", "version": "3"}]
    gateway = start(routes={"iris": {**SHADOWED["iris"], "fallback": fallbacks, "retries": 0}})

    answer = gateway.client.post(INFER, json=BODY)

    assert answer.headers["X-Driftgate-Version"] == "3"
    time.sleep(0.2)
    assert len(shadow_calls(runtime)) == 1
    assert shadow_outcomes(gateway) == {}


# --- shadows of a target whose circuit breaker is open -----------------------------------------


def test_a_shadow_is_not_sent_to_a_target_whose_circuit_breaker_is_open(start, runtime) -> None:
    """A target that failed as a fallback until its breaker opened was still sent every
    shadow: load on a target known to be failing, which can only slow its recovery."""
    runtime.behave(Fail(500), model="iris", version="1")
    runtime.behave(Fail(500), model="iris", version="2")
    fallbacks = [SHADOW_V2["target"], {"model": "iris", "version": "3"}]
    routes = {
        "iris": {
            **SHADOWED["iris"],
            "fallback": fallbacks,
            "retries": 0,
            "circuit_breaker": {"failures": 1, "open_s": 60},
        }
    }
    gateway = start(routes=routes)
    # Version 2 fails as a fallback (it is not mirrored to: it had the request): its
    # breaker opens, as does version 1's, and version 3 answers.
    gateway.client.post(INFER, json=BODY)
    runtime.reset_calls()

    for _ in range(3):  # versions 1 and 2 are skipped: version 3 answers at once
        answer = gateway.client.post(INFER, json=BODY)
        assert answer.headers["X-Driftgate-Version"] == "3"

    time.sleep(0.2)  # a shadow would have been sent by now
    assert shadow_calls(runtime) == []
    assert shadow_outcomes(gateway) == {"circuit_open": 3.0}
    dispatcher = gateway.state.dispatcher
    states = {t.version: state for _, t, state in dispatcher.breaker_states(dispatcher.clock())}
    assert states == {"1": "open", "2": "open", "3": "closed"}


# --- shadows have circuit breakers of their own ----------------------------------------------


def breaker_states(gateway: Gateway) -> dict[str | None, str]:
    """The shadows' breakers, by version."""
    now = gateway.state.dispatcher.clock()
    return {t.version: state for _, t, state in gateway.state.shadows.breaker_states(now)}


def request_breaker_states(gateway: Gateway) -> dict[str | None, str]:
    """The breakers of the route's requests (and fallbacks), by version."""
    dispatcher = gateway.state.dispatcher
    return {t.version: state for _, t, state in dispatcher.breaker_states(dispatcher.clock())}


def mirror(gateway: Gateway, requests: int) -> None:
    """Send ``requests`` one after another, each once the previous one's shadow is done
    (counted), so that its result has reached the breaker."""
    for _ in range(requests):
        before = sum(shadow_outcomes(gateway).values())
        answer = gateway.client.post(INFER, json=BODY)
        assert answer.status_code == 200
        assert answer.headers["X-Driftgate-Version"] == "1"

        def counted(before: float = before) -> bool:
            return sum(shadow_outcomes(gateway).values()) == before + 1

        eventually(counted)


@pytest.mark.parametrize(
    ("failure", "outcome"),
    [(Fail(500), "error"), (Fail(503), "error"), (Refuse(), "error"), (Slow(5.0), "timeout")],
    ids=["500", "503", "refused", "timeout"],
)
def test_a_shadow_only_target_that_keeps_failing_stops_receiving_shadows(
    start, runtime, failure, outcome
) -> None:
    """Version 2 only ever gets mirrored traffic, and failed all of it: it was mirrored to
    forever, load on a target known to be failing, and no breaker ever said so."""
    runtime.behave(failure, model="iris", version="2")
    routes = {
        "iris": {
            **SHADOWED["iris"],
            "timeout_s": 0.3,
            "circuit_breaker": {"failures": 3, "open_s": 60},
        }
    }
    gateway = start(routes=routes)

    mirror(gateway, 6)

    assert len(shadow_calls(runtime)) == 3
    assert shadow_outcomes(gateway) == {outcome: 3.0, "circuit_open": 3.0}
    assert breaker_states(gateway) == {"2": "open"}
    assert request_breaker_states(gateway) == {"1": "closed"}
    circuits = gateway.client.get("/admin/replicas").json()["shadow_circuits"]
    assert circuits == [{"route": "iris", "model": "iris", "version": "2", "state": "open"}]


@pytest.mark.parametrize(
    "answer",
    [Fail(400, "input 'x' has the wrong shape"), Fail(404), Answer({"class": ["virginica"]})],
    ids=["400", "404", "disagrees"],
)
def test_refusals_and_disagreements_are_not_failures_of_the_shadow_target(
    start, runtime, answer
) -> None:
    """As for the route's own requests, only a 5xx, a timeout or a connection error is the
    target's fault: a shadow that answers differently is what the comparison measures."""
    runtime.behave(answer, model="iris", version="2")
    gateway = start(routes={"iris": {**SHADOWED["iris"], "circuit_breaker": {"failures": 1}}})

    mirror(gateway, 3)

    assert len(shadow_calls(runtime)) == 3
    assert "circuit_open" not in shadow_outcomes(gateway)
    assert breaker_states(gateway) == {"2": "closed"}


def test_no_breaker_for_shadows_on_a_route_without_breakers(start, runtime) -> None:
    runtime.behave(Fail(500), model="iris", version="2")
    gateway = start(routes={"iris": {**SHADOWED["iris"], "circuit_breaker": None}})

    mirror(gateway, 3)

    assert shadow_outcomes(gateway) == {"error": 3.0}
    assert breaker_states(gateway) == {}


def test_after_open_s_one_shadow_probes_a_shadow_only_target_and_closes_it(start, runtime) -> None:
    runtime.behave(Fail(500), model="iris", version="2")
    routes = {"iris": {**SHADOWED["iris"], "circuit_breaker": {"failures": 1, "open_s": 0.5}}}
    gateway = start(routes=routes)
    mirror(gateway, 1)  # fails: open
    gateway.client.post(INFER, json=BODY)  # not sent
    assert breaker_states(gateway) == {"2": "open"}

    runtime.behave(Slow(0.5), model="iris", version="2")  # recovered, a bit slow
    time.sleep(0.5)
    for _ in range(3):  # half open: the first request's shadow probes, the others wait
        gateway.client.post(INFER, json=BODY)
    eventually(lambda: shadow_outcomes(gateway).get("ok") == 1)
    assert shadow_outcomes(gateway) == {"error": 1.0, "circuit_open": 3.0, "ok": 1.0}
    assert breaker_states(gateway)["2"] == "closed"

    mirror(gateway, 2)  # closed: every shadow is sent again
    assert shadow_outcomes(gateway)["ok"] == 3.0


def test_shadows_never_open_or_close_the_circuit_of_the_routes_requests(start, runtime) -> None:
    """Version 2 is both a shadow and the first fallback. Its failing shadows opened the
    breaker the route's requests go through, and its succeeding shadows reset it: what a
    shadow meets (one try, the route's whole timeout) reached the clients after all."""
    runtime.behave(Fail(500), model="iris", version="2")
    fallbacks = [SHADOW_V2["target"], {"model": "iris", "version": "3"}]
    routes = {
        "iris": {
            **SHADOWED["iris"],
            "fallback": fallbacks,
            "retries": 0,
            "circuit_breaker": {"failures": 2, "open_s": 60},
        }
    }
    gateway = start(routes=routes)
    mirror(gateway, 2)
    assert breaker_states(gateway) == {"2": "open"}
    assert request_breaker_states(gateway) == {"1": "closed"}

    # The primary fails: the request still tries version 2 (its circuit for requests is
    # closed: one failure now), which fails too, and version 3 answers.
    runtime.behave(Fail(500), model="iris", version="1")
    runtime.reset_calls()
    answer = gateway.client.post(INFER, json=BODY)
    assert answer.headers["X-Driftgate-Version"] == "3"
    assert len(shadow_calls(runtime)) == 1  # the fallback's try; no shadow after it
    assert request_breaker_states(gateway) == {"1": "closed", "2": "closed", "3": "closed"}

    # Both recover; a shadow to version 2 succeeds (its own breaker reset, as if open_s had
    # passed): that says nothing about the failure the requests' circuit counted.
    runtime.behave(Answer(), model="iris", version="1")
    runtime.behave(Answer(), model="iris", version="2")
    gateway.state.shadows._breakers.clear()
    mirror(gateway, 1)
    assert shadow_outcomes(gateway)["ok"] == 1.0

    # Both fail again: version 2's second failed request opens its circuit.
    runtime.behave(Fail(500), model="iris", version="1")
    runtime.behave(Fail(500), model="iris", version="2")
    answer = gateway.client.post(INFER, json=BODY)
    assert answer.headers["X-Driftgate-Version"] == "3"
    assert request_breaker_states(gateway)["2"] == "open"

"""What the dispatcher does when replicas fail: retries, ejection, fallbacks, circuits, budgets.

Each test programs the fake replicas (tests/gateway/fakes.py), sends requests through the
whole gateway app, and checks both what the client got and what each replica received.
The rules under test are in docs/routing.md ("Fallbacks, retries and timeouts", "Circuit
breaker", "Replicas: load balancing, health and ejection").
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from tests.gateway.fakes import (
    Answer,
    Behaviour,
    Fail,
    FakeRuntime,
    Refuse,
    Slow,
    eventually,
    gateway_factory,
)

R1, R2 = "r1:9001", "r2:9002"
INFER = "/v2/models/iris/infer"
BODY = {"inputs": [{"name": "x", "shape": [1], "datatype": "FP32", "data": [1.0]}]}

#: Version 2 answers, backed by version 1; fast budgets so failing tests stay fast.
WITH_FALLBACK = {
    "iris": {
        "primary": {"model": "iris", "version": "2"},
        "fallback": [{"model": "iris", "version": "1"}],
        "per_try_timeout_s": 0.2,
        "timeout_s": 2.0,
    }
}


def replicas_called(runtime: FakeRuntime) -> list[str]:
    return [call.replica for call in runtime.inference_calls()]


# --- retries --------------------------------------------------------------------------------


def test_a_refused_connection_is_retried_on_the_other_replica(start, runtime) -> None:
    runtime.behave(Refuse(), replica=R1)
    gateway = start()

    answer = gateway.client.post(INFER, json=BODY)

    assert answer.status_code == 200
    # Round-robin starts at the first replica; the retry must go elsewhere.
    assert replicas_called(runtime) == [R1, R2]
    # No route configures iris and no runtime had served it: a made-up name's label.
    assert gateway.metric("driftgate_upstream_retries_total", route="_unknown") == 1
    while gateway.metric("driftgate_upstream_retries_total", route="iris") == 0:
        assert gateway.client.post(INFER, json=BODY).status_code == 200  # served: its label
        assert gateway.metric("driftgate_upstream_retries_total") <= 3


def test_a_503_is_retried_on_the_other_replica(start, runtime) -> None:
    runtime.behave(Fail(503, "model iris is loading"), replica=R1)
    gateway = start()

    answer = gateway.client.post(INFER, json=BODY)

    assert answer.status_code == 200
    assert answer.json()["outputs"] == {"class": ["setosa"]}
    assert replicas_called(runtime) == [R1, R2]


def test_a_4xx_is_the_clients_answer_passed_through_and_never_retried(start, runtime) -> None:
    bad_input = Fail(400, "input 'x': expected FP32, got BYTES")
    runtime.behave(bad_input)
    gateway = start()

    answer = gateway.client.post(INFER, json=BODY)

    assert answer.status_code == 400
    assert answer.content == bad_input.body
    assert answer.headers["content-type"] == "application/json"
    assert replicas_called(runtime) == [R1]


def test_retries_never_go_back_to_a_replica_already_tried() -> None:
    runtime = FakeRuntime(replicas=["r1:9001", "r2:9002", "r3:9003"])
    runtime.behave(Refuse())
    with gateway_factory(runtime) as start_three:
        gateway = start_three(routes={"iris": {"retries": 5}})

        answer = gateway.client.post(INFER, json=BODY)

    assert answer.status_code == 503
    assert sorted(replicas_called(runtime)) == ["r1:9001", "r2:9002", "r3:9003"]


# --- replica health and passive ejection -----------------------------------------------------


@pytest.mark.parametrize(
    "failure", [Refuse(), Fail(502), Slow(5.0)], ids=["refused", "502", "timeout"]
)
def test_a_replica_failing_in_a_row_is_ejected_and_skipped(start, runtime, failure) -> None:
    runtime.behave(failure, replica=R1)
    gateway = start(
        routes={"iris": {"retries": 1, "per_try_timeout_s": 0.1, "circuit_breaker": None}},
        ejection={"consecutive_failures": 2, "base_ejection_s": 30, "max_ejection_s": 60},
    )

    while replicas_called(runtime).count(R1) < 2:  # until R1 failed twice in a row
        gateway.client.post(INFER, json=BODY)
    runtime.reset_calls()
    answers = [gateway.client.post(INFER, json=BODY) for _ in range(3)]

    assert [a.status_code for a in answers] == [200, 200, 200]
    assert replicas_called(runtime) == [R2, R2, R2]
    replicas = {r["url"]: r for r in gateway.client.get("/admin/replicas").json()["replicas"]}
    assert replicas[f"http://{R1}"]["ejected"] is True
    assert replicas[f"http://{R1}"]["ejected_for_s"] > 0
    assert replicas[f"http://{R2}"]["ejected"] is False
    assert gateway.metric("driftgate_replica_ejected", replica=f"http://{R1}") == 1


def test_the_last_replica_standing_is_never_ejected(start, runtime) -> None:
    runtime.set_ready(R2, False)
    runtime.behave(Refuse(), replica=R1)
    gateway = start(ejection={"consecutive_failures": 1})

    answers = [gateway.client.post(INFER, json=BODY).status_code for _ in range(3)]

    assert answers == [503, 503, 503]
    assert replicas_called(runtime) == [R1, R1, R1]
    replicas = gateway.client.get("/admin/replicas").json()["replicas"]
    assert [r["ejected"] for r in replicas] == [False, False]


def test_a_replica_failing_its_health_check_gets_no_traffic_until_it_passes(start, runtime) -> None:
    gateway = start()
    runtime.set_ready(R1, False)
    eventually(lambda: not gateway.client.get("/admin/replicas").json()["replicas"][0]["healthy"])

    for _ in range(4):
        gateway.client.post(INFER, json=BODY)
    assert set(replicas_called(runtime)) == {R2}

    runtime.set_ready(R1, True)
    eventually(lambda: gateway.client.get("/admin/replicas").json()["replicas"][0]["healthy"])
    runtime.reset_calls()
    for _ in range(4):
        gateway.client.post(INFER, json=BODY)
    assert set(replicas_called(runtime)) == {R1, R2}


def test_the_gateway_is_ready_while_any_replica_is_healthy(start, runtime) -> None:
    gateway = start()
    assert gateway.client.get("/v2/health/ready").status_code == 200

    runtime.set_ready(R1, False)
    runtime.set_ready(R2, False)

    eventually(lambda: gateway.client.get("/v2/health/ready").status_code == 503)
    assert gateway.client.head("/v2/health/ready").status_code == 503  # probes may use HEAD
    assert gateway.client.head("/v2/health/live").status_code == 200


# --- fallbacks ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("failure", "reason"),
    [(Fail(500), "status_5xx"), (Refuse(), "unavailable"), (Slow(5.0), "timeout")],
    ids=["server-error", "all-replicas-down", "timeout"],
)
def test_the_fallback_answers_when_the_primary_fails(
    start, runtime, failure: Behaviour, reason: str
) -> None:
    runtime.behave(failure, model="iris", version="2")
    gateway = start(routes=WITH_FALLBACK)

    answer = gateway.client.post(INFER, json=BODY)

    assert answer.status_code == 200
    assert answer.json()["version"] == "1"
    assert answer.headers["X-Driftgate-Role"] == "fallback"
    assert answer.headers["X-Driftgate-Fallback-Reason"] == reason
    assert answer.headers["X-Driftgate-Model"] == "iris"
    assert answer.headers["X-Driftgate-Version"] == "1"
    assert answer.headers["X-Driftgate-Arm"] == "primary"
    assert runtime.inference_calls()[-1].path == "/v2/models/iris/versions/1/infer"
    assert gateway.metric("driftgate_fallbacks_total", route="iris", reason=reason) == 1
    assert (
        gateway.metric("driftgate_requests_total", route="iris", version="1", role="fallback") == 1
    )


def test_the_primary_answers_without_a_fallback_reason_when_it_works(start, runtime) -> None:
    gateway = start(routes=WITH_FALLBACK)

    answer = gateway.client.post(INFER, json=BODY)

    assert answer.headers["X-Driftgate-Role"] == "primary"
    assert answer.headers["X-Driftgate-Version"] == "2"
    assert "X-Driftgate-Fallback-Reason" not in answer.headers
    assert gateway.metric("driftgate_fallbacks_total") == 0


def test_a_500_without_a_fallback_reaches_the_client_as_the_runtime_wrote_it(
    start, runtime
) -> None:
    crash = Fail(500, "model iris version 3: predict raised ValueError")
    runtime.behave(crash)
    gateway = start()

    answer = gateway.client.post(INFER, json=BODY)

    assert answer.status_code == 500
    assert answer.content == crash.body
    assert replicas_called(runtime) == [R1]  # a 500 is not retried, only 503 is


def test_a_fallbacks_own_error_is_counted_as_the_fallbacks(start, runtime) -> None:
    """When every target failed, the last model error is the client's answer: a fallback's
    500 was counted and logged as the primary's."""
    runtime.behave(Fail(500, "primary broke"), model="iris", version="2")
    runtime.behave(Fail(500, "fallback broke too"), model="iris", version="1")
    gateway = start(routes=WITH_FALLBACK)

    answer = gateway.client.post(INFER, json=BODY)

    assert answer.status_code == 500 and answer.json() == {"error": "fallback broke too"}
    assert gateway.metric("driftgate_requests_total", version="1", role="fallback") == 1
    assert gateway.metric("driftgate_requests_total", role="primary") == 0


@dataclass(frozen=True)
class NotServed:
    """The runtime's 404 for a model version it does not serve: no ``X-Model-Version``."""

    async def __call__(self, request: httpx.Request, model: str, version: str) -> httpx.Response:
        message = f"model '{model}' has no version {version} (loaded versions: 1, 2)"
        return httpx.Response(404, json={"error": message}, headers={"X-Model-Name": model})


def test_the_fallback_answers_when_the_primary_is_a_version_not_deployed(start, runtime) -> None:
    gateway = start(
        routes={"iris": {**WITH_FALLBACK["iris"], "primary": {"model": "iris", "version": "9"}}}
    )

    answer = gateway.client.post(INFER, json=BODY)

    assert answer.status_code == 200
    assert answer.headers["X-Driftgate-Role"] == "fallback"
    assert answer.headers["X-Driftgate-Fallback-Reason"] == "not_served"
    assert answer.headers["X-Driftgate-Version"] == "1"
    # A 4xx is never retried on another replica (the rule): the fallback at once.
    assert [c.path for c in runtime.inference_calls()] == [
        "/v2/models/iris/versions/9/infer",
        "/v2/models/iris/versions/1/infer",
    ]
    assert gateway.metric("driftgate_fallbacks_total", route="iris", reason="not_served") == 1
    # Which target failed, for on-call (DriftgateFallbackInUse names it).
    failed = {"failed_model": "iris", "failed_version": "9", "model": "iris"}
    assert gateway.metric("driftgate_fallbacks_total", **failed) == 1


def test_a_version_one_replica_does_not_serve_yet_is_not_retried_but_falls_back(
    start, runtime
) -> None:
    """A 404 is a 4xx, never retried on another replica, even one that may have loaded a
    new version already: the fallback answers meanwhile."""
    runtime.behave(NotServed(), replica=R1)
    gateway = start(routes=WITH_FALLBACK)

    answer = gateway.client.post(INFER, json=BODY)

    assert answer.status_code == 200
    assert answer.headers["X-Driftgate-Fallback-Reason"] == "not_served"
    assert replicas_called(runtime)[0] == R1 and len(replicas_called(runtime)) == 2


def test_a_version_not_deployed_without_a_fallback_is_the_runtimes_404_never_a_circuit(
    start, runtime
) -> None:
    gateway = start(routes={"iris": {"circuit_breaker": {"failures": 1, "open_s": 30}}})

    answers = [gateway.client.post("/v2/models/iris/versions/9/infer", json=BODY) for _ in range(3)]

    assert [a.status_code for a in answers] == [404, 404, 404]
    assert answers[-1].json() == {"error": "model 'iris' has no version or label '9'"}
    assert "X-Driftgate-Role" not in answers[-1].headers


def test_a_primary_not_served_behind_a_sick_replica_still_falls_back_as_not_served(
    start, runtime
) -> None:
    runtime.behave(NotServed(), replica=R1, version="3")
    runtime.behave(Refuse(), replica=R2)
    route = {**WITH_FALLBACK["iris"], "primary": {"model": "iris", "version": "3"}}
    gateway = start(routes={"iris": {**route, "circuit_breaker": {"failures": 1, "open_s": 30}}})

    answers = [gateway.client.post(INFER, json=BODY) for _ in range(2)]

    # Neither "unavailable" (R2 refused) nor, the second time, "circuit_open".
    assert [a.headers["X-Driftgate-Fallback-Reason"] for a in answers] == [
        "not_served",
        "not_served",
    ]
    assert answers[-1].headers["X-Driftgate-Version"] == "1"


def test_a_404_naming_a_version_is_the_clients_answer_and_never_falls_back(start, runtime) -> None:
    refusal = Fail(404, "output 'klass' is not an output of iris version 2")
    runtime.behave(refusal, model="iris", version="2")
    gateway = start(routes=WITH_FALLBACK)

    answer = gateway.client.post(INFER, json=BODY)

    assert answer.status_code == 404
    assert answer.content == refusal.body
    assert replicas_called(runtime) == [R1]


# --- circuit breaker ------------------------------------------------------------------------


class ManualClock:
    """The dispatcher's clock, moved by the test: circuits open and close without sleeping."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def with_circuit(failures: int) -> dict[str, Any]:
    breaker = {"failures": failures, "open_s": 10}
    return {"iris": {**WITH_FALLBACK["iris"], "circuit_breaker": breaker}}


def test_an_open_circuit_skips_the_primary_until_a_probe_closes_it(start, runtime) -> None:
    runtime.behave(Fail(500), model="iris", version="2")
    gateway = start(routes=with_circuit(failures=2))
    clock = gateway.state.dispatcher.clock = ManualClock()

    def primary_calls() -> int:
        return sum(c.path.endswith("/versions/2/infer") for c in runtime.inference_calls())

    def circuit_of_version_2() -> str:
        circuits = gateway.client.get("/admin/replicas").json()["circuits"]
        return str(next(c["state"] for c in circuits if c["version"] == "2"))

    reasons = [
        gateway.client.post(INFER, json=BODY).headers["X-Driftgate-Fallback-Reason"]
        for _ in range(3)
    ]
    assert reasons == ["status_5xx", "status_5xx", "circuit_open"]
    assert primary_calls() == 2  # the third request did not even try version 2
    assert circuit_of_version_2() == "open"

    runtime.behave(Answer(), model="iris", version="2")  # version 2 recovers
    clock.advance(10)  # open_s has passed: the next request is the half-open probe
    assert circuit_of_version_2() == "half_open"
    probe = gateway.client.post(INFER, json=BODY)

    assert probe.headers["X-Driftgate-Role"] == "primary"
    assert probe.headers["X-Driftgate-Version"] == "2"
    assert circuit_of_version_2() == "closed"
    assert primary_calls() == 3


def test_a_half_open_probe_answered_not_served_lets_the_next_request_probe(start, runtime) -> None:
    """A probe that found the version not served (being redeployed) counted as nothing and
    kept the probe slot: every request fell back as circuit_open for another open_s."""
    runtime.behave(Fail(500), model="iris", version="2")
    gateway = start(routes=with_circuit(failures=1))
    clock = gateway.state.dispatcher.clock = ManualClock()
    assert gateway.client.post(INFER, json=BODY).headers["X-Driftgate-Fallback-Reason"] == (
        "status_5xx"
    )
    runtime.behave(NotServed(), model="iris", version="2")
    clock.advance(10)
    probe = gateway.client.post(INFER, json=BODY)
    assert probe.headers["X-Driftgate-Fallback-Reason"] == "not_served"

    runtime.behave(Answer(), model="iris", version="2")  # deployed again
    answer = gateway.client.post(INFER, json=BODY)

    assert answer.headers["X-Driftgate-Role"] == "primary"
    assert answer.headers["X-Driftgate-Version"] == "2"


def test_a_failed_probe_opens_the_circuit_again(start, runtime) -> None:
    runtime.behave(Fail(500), model="iris", version="2")
    gateway = start(routes=with_circuit(failures=1))
    clock = gateway.state.dispatcher.clock = ManualClock()
    gateway.client.post(INFER, json=BODY)  # opens it

    clock.advance(10)
    probe = gateway.client.post(INFER, json=BODY)
    after_probe = gateway.client.post(INFER, json=BODY)

    assert probe.headers["X-Driftgate-Fallback-Reason"] == "status_5xx"  # tried, failed
    assert after_probe.headers["X-Driftgate-Fallback-Reason"] == "circuit_open"


# --- when nothing answers: 503 and 504 ------------------------------------------------------


def test_503_with_retry_after_when_no_replica_can_answer(start, runtime) -> None:
    runtime.behave(Refuse())
    gateway = start()

    answer = gateway.client.post(INFER, json=BODY, headers={"X-Request-ID": "req-503"})

    assert answer.status_code == 503
    assert answer.headers["Retry-After"] == "1"
    assert answer.headers["X-Request-ID"] == "req-503"
    assert "route 'iris': no target could answer" in answer.json()["error"]
    # No replica ever answered for this unconfigured name: it is no label value (yet).
    assert gateway.metric("driftgate_requests_total", route="_unknown", code="503") == 1


def test_503_when_every_replica_answers_503(start, runtime) -> None:
    runtime.behave(Fail(503, "overloaded"))
    gateway = start()

    answer = gateway.client.post(INFER, json=BODY)

    assert answer.status_code == 503
    assert answer.headers["Retry-After"] == "1"
    assert replicas_called(runtime) == [R1, R2]


def test_503_when_the_circuit_is_open_and_there_is_no_fallback(start, runtime) -> None:
    runtime.behave(Fail(500))
    gateway = start(routes={"iris": {"circuit_breaker": {"failures": 1, "open_s": 30}}})
    assert gateway.client.post(INFER, json=BODY).status_code == 500

    answer = gateway.client.post(INFER, json=BODY)

    assert answer.status_code == 503
    assert "circuit open for model 'iris'" in answer.json()["error"]
    assert len(runtime.inference_calls()) == 1


def test_504_when_the_route_budget_runs_out(start, runtime) -> None:
    runtime.behave(Slow(5.0))
    gateway = start(
        routes={
            "iris": {
                "fallback": [{"model": "iris", "version": "1"}],
                "per_try_timeout_s": 0.2,
                "timeout_s": 0.3,
            }
        }
    )

    started = time.perf_counter()
    answer = gateway.client.post(INFER, json=BODY)
    elapsed = time.perf_counter() - started

    assert answer.status_code == 504
    assert "no answer within 0.3s" in answer.json()["error"]
    # The retry and the fallback shared the one budget: nobody waited for the 5 s answer.
    assert elapsed < 1.5
    assert gateway.metric("driftgate_requests_total", route="iris", code="504") == 1

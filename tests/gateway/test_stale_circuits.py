"""Circuit breakers of targets no route names any more are forgotten (docs/routing.md,
"Circuit breaker"): ``GET /admin/replicas`` listed, for good, the breakers of targets a
``PUT`` had taken out of a route and of routes that had gone. Breakers of targets a route
still names keep their state, and those of routes that did not change are left alone.
So do the open ones of versions that only request URLs name, while the route's primary
keeps its model: a change that left such a version alone closed its open breaker, and its
requests went to a target known to be broken.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

from gateway.policy import parse_route
from gateway.route_table import RouteTable
from tests.gateway.fakes import Fail, FakeRuntime, Gateway, Slow, eventually

BODY = {"inputs": [{"name": "x", "shape": [1], "datatype": "FP32", "data": [1.0]}]}
BREAKER = {"failures": 1, "open_s": 60}
#: iris answered by version 1, falling back to version 2; version 1 fails.
IRIS = {
    "primary": {"model": "iris", "version": "1"},
    "fallback": [{"model": "iris", "version": "2"}],
    "circuit_breaker": BREAKER,
}


def circuits(gateway: Gateway, kind: str = "circuits") -> dict[tuple[str, str], str]:
    listed = gateway.client.get("/admin/replicas").json()[kind]
    return {(c["route"], c["version"]): c["state"] for c in listed}


def infer(gateway: Gateway, route: str = "iris", version: str | None = None) -> Any:
    path = f"/v2/models/{route}" + (f"/versions/{version}" if version else "") + "/infer"
    return gateway.client.post(path, json=BODY)


def put(gateway: Gateway, route: str, policy: dict[str, Any]) -> None:
    assert gateway.client.put(f"/admin/routes/{route}", json=policy).status_code == 200


def test_a_put_forgets_the_breakers_of_targets_it_took_out_and_keeps_the_others(
    start, runtime: FakeRuntime
) -> None:
    runtime.behave(Fail(500), model="iris", version="1")
    gateway = start(routes={"iris": IRIS})
    infer(gateway)  # version 1 fails (its breaker opens), version 2 answers
    assert circuits(gateway) == {("iris", "1"): "open", ("iris", "2"): "closed"}

    put(gateway, "iris", {**IRIS, "fallback": [{"model": "iris", "version": "3"}]})

    assert circuits(gateway) == {("iris", "1"): "open"}  # still named, still open


def test_a_route_removed_takes_its_breakers_along(start, runtime: FakeRuntime, tmp_path) -> None:
    runtime.behave(Fail(500), model="iris", version="1")
    gateway = start(routes={"iris": IRIS}, routes_dir=tmp_path)
    put(gateway, "irsi", IRIS)  # a typo
    infer(gateway, "irsi")
    infer(gateway)
    assert set(circuits(gateway)) == {("irsi", "1"), ("irsi", "2"), ("iris", "1"), ("iris", "2")}

    assert gateway.client.delete("/admin/routes/irsi").status_code == 200

    assert circuits(gateway) == {("iris", "1"): "open", ("iris", "2"): "closed"}


def test_a_route_without_breakers_now_has_none_listed(start, runtime: FakeRuntime) -> None:
    runtime.behave(Fail(500), model="iris", version="1")
    gateway = start(routes={"iris": IRIS})
    infer(gateway)

    put(gateway, "iris", {**IRIS, "circuit_breaker": None})

    assert circuits(gateway) == {}


def test_breakers_still_named_take_the_routes_new_settings(start, runtime: FakeRuntime) -> None:
    runtime.behave(Fail(500), model="iris", version="1")
    gateway = start(routes={"iris": IRIS})
    infer(gateway)
    assert circuits(gateway)[("iris", "1")] == "open"

    put(gateway, "iris", {**IRIS, "circuit_breaker": {"failures": 1, "open_s": 0.001}})

    assert circuits(gateway)[("iris", "1")] == "half_open"  # open_s is the new one


def test_other_routes_keep_every_breaker_even_of_versions_named_in_urls(
    start, runtime: FakeRuntime
) -> None:
    runtime.behave(Fail(500), model="iris", version="3")
    gateway = start(routes={"iris": IRIS, "titanic": {}})
    infer(gateway, "iris", version="3")  # a version only the URL names

    put(gateway, "titanic", {"retries": 2})

    assert circuits(gateway) == {("iris", "3"): "open"}


def test_shadow_breakers_of_a_shadow_taken_out_are_forgotten(start, runtime: FakeRuntime) -> None:
    runtime.behave(Fail(500), model="iris", version="2")
    shadowed = {
        "primary": {"model": "iris", "version": "1"},
        "shadow": [{"target": {"model": "iris", "version": "2"}}],
        "circuit_breaker": BREAKER,
    }
    gateway = start(routes={"iris": shadowed})
    infer(gateway)
    eventually(lambda: circuits(gateway, "shadow_circuits") == {("iris", "2"): "open"})

    put(gateway, "iris", {**shadowed, "shadow": [{"target": {"model": "iris", "version": "3"}}]})

    assert circuits(gateway, "shadow_circuits") == {}


def test_a_change_another_gateway_wrote_forgets_them_here_too(
    start, runtime: FakeRuntime, tmp_path: Path
) -> None:
    runtime.behave(Fail(500), model="iris", version="1")
    gateway = start(routes={"iris": IRIS}, routes_dir=tmp_path)
    infer(gateway)
    other = RouteTable({}, tmp_path)

    other.replace("iris", parse_route("iris", {**IRIS, "fallback": []}))

    eventually(lambda: circuits(gateway) == {("iris", "1"): "open"}, timeout_s=6)


def in_flight(gateway: Gateway, runtime: FakeRuntime) -> tuple[threading.Thread, list[Any]]:
    """An inference request sent in the background, once it is waiting on its first target."""
    answers: list[Any] = []
    thread = threading.Thread(target=lambda: answers.append(infer(gateway)))
    thread.start()
    eventually(runtime.inference_calls)
    return thread, answers


def test_a_request_begun_before_a_change_keeps_no_breaker_with_the_old_settings(
    start, runtime: FakeRuntime
) -> None:
    runtime.behave(Slow(0.5, Fail(500)), model="iris", version="1")
    gateway = start(routes={"iris": {**IRIS, "retries": 0}})
    thread, answers = in_flight(gateway, runtime)
    put(gateway, "iris", {**IRIS, "retries": 0, "circuit_breaker": {"failures": 5, "open_s": 60}})
    thread.join()
    assert answers[0].status_code == 200  # version 2 answered, after version 1 failed

    runtime.behave(Fail(500), model="iris")
    infer(gateway)  # one failure each: with failures: 5, neither opens

    assert circuits(gateway) == {("iris", "1"): "closed", ("iris", "2"): "closed"}


def test_a_request_begun_before_a_change_brings_back_no_breaker_of_a_target_gone(
    start, runtime: FakeRuntime
) -> None:
    runtime.behave(Slow(0.5, Fail(500)), model="iris", version="1")
    gateway = start(routes={"iris": {**IRIS, "retries": 0}})
    thread, _ = in_flight(gateway, runtime)
    put(gateway, "iris", {"primary": {"model": "iris", "version": "3"}, "circuit_breaker": None})
    thread.join()

    assert circuits(gateway) == {}


def test_a_request_begun_before_a_change_brings_back_no_shadow_breaker(
    start, runtime: FakeRuntime
) -> None:
    shadowed = {
        "primary": {"model": "iris", "version": "1"},
        "shadow": [{"target": {"model": "iris", "version": "2"}}],
        "circuit_breaker": BREAKER,
    }
    runtime.behave(Slow(0.5), model="iris", version="1")
    gateway = start(routes={"iris": shadowed})
    thread, _ = in_flight(gateway, runtime)
    put(gateway, "iris", {**shadowed, "shadow": []})
    thread.join()
    eventually(lambda: len(runtime.inference_calls()) == 2)  # its shadow, on the old policy

    assert circuits(gateway, "shadow_circuits") == {}


def test_a_change_to_its_route_keeps_the_open_breaker_of_a_version_only_urls_name(
    start, runtime: FakeRuntime
) -> None:
    runtime.behave(Fail(500), model="iris", version="3")
    gateway = start(routes={"iris": IRIS})
    infer(gateway, "iris", version="3")  # a version only the URL names: its breaker opens
    calls = len(runtime.inference_calls())

    put(gateway, "iris", {**IRIS, "retries": 2})

    assert circuits(gateway)[("iris", "3")] == "open"
    refused = infer(gateway, "iris", version="3")
    assert refused.status_code == 503 and len(runtime.inference_calls()) == calls


def test_a_route_answered_by_another_model_forgets_the_breakers_of_the_old_models_versions(
    start, runtime: FakeRuntime
) -> None:
    runtime.behave(Fail(500), model="iris", version="3")
    gateway = start(routes={"iris": IRIS})
    infer(gateway, "iris", version="3")

    put(gateway, "iris", {**IRIS, "primary": {"model": "setosa", "version": "1"}, "fallback": []})

    assert ("iris", "3") not in circuits(gateway)  # URLs now name setosa's versions

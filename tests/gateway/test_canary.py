"""Automated canary analysis: traffic steps up while the canary is healthy, back when not.

The decision (``judge``) and its effect on the policy (``applied``) are pure and tested as
such; then whole gateways with fake replicas show the steps, the promotion and the
rollbacks as clients and operators see them (docs/routing.md, "Canary analysis").
"""

from __future__ import annotations

import logging
import re
import time
from datetime import UTC, datetime
from typing import Any

import pytest

from gateway.canary_verdict import DriftCheck, Verdict, applied, drift_checks_from, judge
from gateway.canary_window import ArmWindow
from gateway.policy import parse_route
from gateway.policy_model import Canary, PolicyError, Target
from monitoring.job_results import latest_reader, update_latest
from tests.gateway.fakes import Fail, Gateway, GatewayFactory, Slow, gateway_factory

V1, V2 = Target("iris", "1"), Target("iris", "2")
INFER = "/v2/models/iris/infer"
BODY = {"inputs": [{"name": "x", "shape": [1], "datatype": "FP32", "data": [1.0]}]}


def window(requests: int, failures: int = 0, latency_s: float = 0.01) -> ArmWindow:
    arm = ArmWindow(requests=requests, failures=failures)
    arm.latencies.extend([latency_s] * requests)
    return arm


CANARY = Canary(target=V2, steps=(10, 50, 100), interval_s=60, min_requests=20)


# --- judge ------------------------------------------------------------------------------------


def test_a_canary_failing_too_often_is_rolled_back_at_once() -> None:
    verdict = judge(CANARY, window(200), window(20, failures=3), elapsed_s=1)
    assert verdict.action == "rollback"
    assert verdict.reason == "error rate 15.00% (3 of 20) > 1.00%"


def test_a_canary_much_slower_than_stable_is_rolled_back() -> None:
    verdict = judge(CANARY, window(200, latency_s=0.010), window(20, latency_s=0.030), 1)
    assert verdict.action == "rollback"
    assert "p90 latency 30.0 ms is 3.00x the stable arm's 10.0 ms (> 1.5x)" in verdict.reason


def test_a_slower_canary_within_the_slack_is_not_rolled_back() -> None:
    # 0.3 ms against 0.1 ms is 3x, but only 0.2 ms slower: noise at this scale.
    verdict = judge(CANARY, window(200, latency_s=0.0001), window(20, latency_s=0.0003), 1)
    assert verdict.action == "hold"


def test_too_few_requests_prove_nothing_either_way() -> None:
    assert judge(CANARY, window(200), window(19, failures=19), 1).action == "hold"
    verdict = judge(CANARY, window(200), window(19), elapsed_s=600)
    assert verdict == Verdict("hold", "waiting for traffic: 19 of 20 requests")


def test_a_healthy_canary_holds_for_the_interval_then_advances_then_is_promoted() -> None:
    assert judge(CANARY, window(200), window(20), elapsed_s=59).action == "hold"
    assert judge(CANARY, window(200), window(20), elapsed_s=60).action == "advance"
    last = Canary(target=V2, steps=(10, 50, 100), step=2, interval_s=60, min_requests=20)
    assert judge(last, ArmWindow(), window(20), elapsed_s=60).action == "promote"


DRIFT_GATED = Canary(
    target=V2, steps=(10, 50, 100), interval_s=60, min_requests=20, max_extra_drifted_features=0
)


def checks(stable: set[str], canary: set[str]) -> tuple[DriftCheck, DriftCheck]:
    return DriftCheck(1.0, frozenset(stable)), DriftCheck(1.0, frozenset(canary))


def test_a_canary_drifting_where_stable_does_not_is_rolled_back() -> None:
    verdict = judge(DRIFT_GATED, window(200), window(20), 1, checks({"age"}, {"age", "survived"}))
    assert verdict == Verdict(
        "rollback",
        "drift: 1 feature(s) drifted on the canary arm and not on the stable arm (survived) > 0",
    )


def test_drift_both_arms_share_is_the_traffic_not_the_canary() -> None:
    shared = checks({"age", "fare"}, {"age", "fare"})
    assert judge(DRIFT_GATED, window(200), window(20), 1, shared).action == "hold"
    assert judge(DRIFT_GATED, window(200), window(20), 60, shared).action == "advance"


def test_drift_is_judged_only_when_the_canary_asks_for_it_and_both_arms_were_checked() -> None:
    drifting = checks(set(), {"survived"})
    assert judge(CANARY, window(200), window(20), 1, drifting).action == "hold"  # not asked
    assert judge(DRIFT_GATED, window(200), window(20), 1, None).action == "hold"  # no checks
    tolerant = Canary(target=V2, min_requests=20, max_extra_drifted_features=1)
    assert judge(tolerant, window(200), window(20), 1, drifting).action == "hold"


def drift_entry(arm: str, version: str, drifted: list[str], timestamp: str) -> dict[str, Any]:
    return {
        "model": "iris",
        "version": version,
        "arm": arm,
        "timestamp": timestamp,
        "run_id": "r",
        "report": None,
        "window": {"kind": "count", "start": timestamp, "end": timestamp, "rows": 500},
        "features": [
            {
                "feature": f,
                "test": "ks",
                "score": 0.3,
                "p_value": 0.0,
                "threshold": 0.01,
                "drifted": f in drifted,
            }
            for f in ("sepal_length", "probabilities")
        ],
    }


def test_drift_checks_read_the_newest_entry_of_each_arm_from_the_store(tmp_path) -> None:
    update_latest(
        tmp_path,
        "drift",
        "iris/2/canary",
        drift_entry("canary", "2", ["probabilities"], "2026-12-07T10:00:00+00:00"),
    )
    update_latest(
        tmp_path,
        "drift",
        "iris/1/stable",
        drift_entry("stable", "1", [], "2026-12-07T10:00:05+00:00"),
    )
    update_latest(
        tmp_path,
        "drift",
        "iris/2/primary",
        drift_entry("primary", "2", ["sepal_length"], "2026-12-07T11:00:00+00:00"),
    )
    latest = drift_checks_from(latest_reader(tmp_path, "drift"))

    canary = latest("iris", "2", "canary")
    assert canary is not None and canary.drifted == {"probabilities"}
    assert canary.checked_at == 1796637600.0  # 2026-12-07T10:00:00Z
    stable = latest("iris", None, "stable")  # a primary without a version: any version
    assert stable is not None and stable.drifted == frozenset()
    assert latest("iris", "1", "canary") is None
    labelled = latest("iris", "next", "canary")  # a label: whichever version it names
    assert labelled is not None and labelled.drifted == {"probabilities"}
    assert latest("digits", None, "stable") is None
    assert (
        drift_checks_from(latest_reader(tmp_path / "nothing", "drift"))("iris", "2", "canary")
        is None
    )


# --- the policy -------------------------------------------------------------------------------


def route(**canary: Any) -> dict[str, Any]:
    return {
        "primary": {"model": "iris", "version": "1"},
        "canary": {"target": {"model": "iris", "version": "2"}, **canary},
    }


def test_a_canary_derives_the_routes_split_stable_first() -> None:
    policy = parse_route("iris", route(steps=[5, 100]))
    assert policy.split is not None
    assert [(a.name, a.target, a.weight) for a in policy.split.arms] == [
        ("stable", V1, 95),
        ("canary", V2, 5),
    ]


@pytest.mark.parametrize(
    ("canary", "message"),
    [
        ({"steps": [50, 20]}, "routes.iris.canary.steps[1]: steps must increase"),
        ({"steps": [0, 20]}, "routes.iris.canary.steps[0]: must be 1 to 100 percent, got 0"),
        ({"step": 4}, "routes.iris.canary.step: must index steps (0 to 3)"),
        ({"max_error_rate": 2}, "routes.iris.canary.max_error_rate: must be 0 to 1, got 2"),
        (
            {"max_extra_drifted_features": -1},
            "routes.iris.canary.max_extra_drifted_features: must be >= 0, got -1",
        ),
        ({"target": {"model": "iris", "version": "1"}}, "canary.target: iris version 1 is already"),
    ],
)
def test_invalid_canaries_are_refused_naming_the_field(canary: dict[str, Any], message: str):
    with pytest.raises(PolicyError, match=re.escape(message)):
        parse_route("iris", route(**canary))


def test_a_split_beside_a_canary_is_refused() -> None:
    raw = route()
    raw["split"] = {"arms": [{"name": "a", "target": {"model": "iris"}, "weight": 1}]}
    with pytest.raises(PolicyError, match="the canary manages this route's split"):
        parse_route("iris", raw)


def test_decisions_rewrite_the_policy() -> None:
    policy = parse_route(
        "iris", {**route(steps=[10, 100]), "fallback": [{"model": "iris", "version": "1"}]}
    )
    advanced = applied(policy, Verdict("advance", "healthy"))
    assert advanced.canary is not None and advanced.canary.weight == 100
    assert advanced.split is not None and [a.name for a in advanced.split.arms] == ["canary"]

    rolled_back = applied(policy, Verdict("rollback", "error rate 50%"))
    assert rolled_back.canary is not None
    assert (rolled_back.canary.status, rolled_back.canary.reason) == (
        "rolled_back",
        "error rate 50%",
    )
    assert (rolled_back.split, rolled_back.fallback) == (None, ())  # v1 answers alone

    promoted = applied(advanced, Verdict("promote", "healthy"))
    assert (promoted.primary, promoted.canary, promoted.split) == (V2, None, None)
    assert promoted.fallback == (V1,)


# --- whole gateways ---------------------------------------------------------------------------


class Clock:
    """Monotonic time that the test moves; it starts where the real one is, so that a look
    the background task took before the swap fits in."""

    def __init__(self) -> None:
        self.now = time.monotonic()

    def __call__(self) -> float:
        return self.now


def with_canary(start: GatewayFactory, **canary: Any) -> tuple[Gateway, Clock]:
    # A second of latency slack: a busy machine's scheduling is no canary's fault, and only
    # the test of latency itself asks for less.
    latency = {"latency_slack_s": 1.0}
    raw = route(sticky={"by": "random"}, interval_s=60, min_requests=5, **{**latency, **canary})
    gateway = start(routes={"iris": raw})
    clock = Clock()
    controller = gateway.state.canary
    assert controller is not None
    controller.clock = clock
    tick(gateway)  # the first look starts the step's window
    return gateway, clock


def tick(gateway: Gateway) -> None:
    """One look at the canaries, on the gateway's event loop (as its background task does)."""
    controller = gateway.state.canary
    assert controller is not None
    with gateway.client.portal() as portal:
        portal.call(controller.tick)


def send(gateway: Gateway, count: int) -> list[tuple[int, str]]:
    answers = [gateway.client.post(INFER, json=BODY) for _ in range(count)]
    return [(a.status_code, a.headers.get("x-driftgate-arm", "")) for a in answers]


def canary_of(gateway: Gateway) -> tuple[int, str] | None:
    canary = gateway.state.routes.get("iris").canary
    return None if canary is None else (canary.step, canary.status)


def test_a_healthy_canary_steps_up_and_is_promoted(start) -> None:
    gateway, clock = with_canary(start, steps=[50, 100])

    arms = {arm for _, arm in send(gateway, 40)}
    assert arms == {"stable", "canary"}
    assert gateway.metric("driftgate_canary_weight_percent", route="iris") == 50
    clock.now += 61
    tick(gateway)
    assert canary_of(gateway) == (1, "progressing")
    assert gateway.metric("driftgate_canary_weight_percent", route="iris") == 100

    tick(gateway)  # the new step's window starts
    assert {answer for answer in send(gateway, 10)} == {(200, "canary")}
    clock.now += 61
    tick(gateway)

    policy = gateway.state.routes.get("iris")
    assert (policy.primary, policy.canary, policy.split) == (V2, None, None)
    assert {answer for answer in send(gateway, 5)} == {(200, "primary")}
    assert gateway.metric("driftgate_canary_decisions_total", route="iris", action="advance") == 1
    assert gateway.metric("driftgate_canary_decisions_total", route="iris", action="promote") == 1
    assert gateway.samples("driftgate_canary_weight_percent") == []
    [span] = [
        s
        for s in gateway.spans.get_finished_spans()
        if s.name == "canary iris"
        and s.attributes
        and s.attributes["driftgate.canary.action"] == "promote"
    ]
    assert span.attributes is not None and span.attributes["driftgate.canary.weight_percent"] == 100


def test_a_canary_that_fails_is_rolled_back_and_stays_back(start, runtime) -> None:
    runtime.behave(Fail(500), model="iris", version="2")
    gateway, clock = with_canary(start, steps=[50, 100])
    # Every action's series exists at 0 before the first decision (for increase() and alerts).
    before = {
        labels["action"]: value
        for labels, value in gateway.samples("driftgate_canary_decisions_total")
    }
    assert before == {"advance": 0, "promote": 0, "rollback": 0}

    answers = send(gateway, 40)
    assert (500, "canary") in answers and (200, "stable") in answers
    tick(gateway)  # no need to wait for the interval: the bound is crossed

    canary = gateway.state.routes.get("iris").canary
    assert canary is not None and canary.status == "rolled_back"
    assert canary.reason is not None and canary.reason.startswith("error rate 100.00%")
    assert {answer for answer in send(gateway, 10)} == {(200, "primary")}
    assert gateway.metric("driftgate_canary_weight_percent", route="iris") == 0
    assert gateway.metric("driftgate_canary_decisions_total", route="iris", action="rollback") == 1
    clock.now += 3600
    tick(gateway)
    assert gateway.state.routes.get("iris").canary == canary  # a rollback is final


def test_a_removed_route_takes_its_canary_weight_series_along(start, tmp_path) -> None:
    """A rolled-back canary's 0 stayed exported after its route file was deleted, so
    DriftgateCanaryRolledBack never resolved."""
    gateway = start(routes_dir=tmp_path / "routes")
    raw = route(status="rolled_back", reason="error rate 100.00%")
    assert gateway.client.put("/admin/routes/iris", json=raw).status_code == 200
    tick(gateway)
    assert gateway.metric("driftgate_canary_weight_percent", route="iris") == 0
    assert len(gateway.samples("driftgate_canary_weight_percent")) == 1

    (tmp_path / "routes" / "iris.yaml").unlink()
    gateway.state.routes.apply(gateway.state.routes.scan())
    tick(gateway)

    assert gateway.samples("driftgate_canary_weight_percent") == []


def test_a_canary_whose_outputs_drift_is_rolled_back_once_both_arms_are_checked(
    start, tmp_path
) -> None:
    raw = route(
        sticky={"by": "random"},
        steps=[50, 100],
        interval_s=60,
        min_requests=5,
        max_extra_drifted_features=0,
    )
    gateway = start(routes={"iris": raw})
    controller = gateway.state.canary
    assert controller is not None
    controller.clock = Clock()
    controller.drift_checks = drift_checks_from(latest_reader(tmp_path, "drift"))
    tick(gateway)  # the step has begun (now, or at the background task's first look)
    now = time.time()

    def checked(arm: str, version: str, drifted: list[str], seconds_from_now: float) -> None:
        at = datetime.fromtimestamp(now + seconds_from_now, UTC).isoformat()
        update_latest(
            tmp_path, "drift", f"iris/{version}/{arm}", drift_entry(arm, version, drifted, at)
        )

    checked("canary", "2", ["probabilities"], -3600)  # before the step: not judged
    checked("stable", "1", [], -3600)
    assert {arm for _, arm in send(gateway, 20)} == {"stable", "canary"}
    tick(gateway)
    assert canary_of(gateway) == (0, "progressing")

    checked("canary", "2", ["probabilities"], 60)
    tick(gateway)  # only the canary arm checked since: still not judged
    assert canary_of(gateway) == (0, "progressing")

    checked("stable", "1", [], 90)
    tick(gateway)
    canary = gateway.state.routes.get("iris").canary
    assert canary is not None and canary.status == "rolled_back"
    assert canary.reason == (
        "drift: 1 feature(s) drifted on the canary arm and not on the stable arm "
        "(probabilities) > 0"
    )
    assert {answer for answer in send(gateway, 5)} == {(200, "primary")}


def test_a_canary_that_is_much_slower_is_rolled_back(start, runtime) -> None:
    runtime.behave(Slow(0.05), model="iris", version="2")
    gateway, _ = with_canary(start, steps=[50, 100], latency_slack_s=0.005)

    send(gateway, 30)
    tick(gateway)

    canary = gateway.state.routes.get("iris").canary
    assert canary is not None and canary.status == "rolled_back"
    assert canary.reason is not None and "p90 latency" in canary.reason


def test_an_admin_put_starts_a_canary_and_get_shows_its_progress(start) -> None:
    gateway = start(routes={"iris": {"primary": {"model": "iris", "version": "1"}}})
    put = gateway.client.put("/admin/routes/iris", json=route(steps=[20, 100]))
    assert put.status_code == 200, put.text

    shown = gateway.client.get("/admin/routes/iris").json()["policy"]
    assert shown["canary"]["step"] == 0 and shown["canary"]["status"] == "progressing"
    assert [arm["weight"] for arm in shown["split"]["arms"]] == [80, 20]


def test_a_put_mid_step_starts_the_window_afresh_and_one_without_canary_ends_it(
    start, runtime
) -> None:
    runtime.behave(Fail(500), model="iris", version="2")
    gateway, _ = with_canary(start, steps=[50, 100])
    send(gateway, 40)

    changed = route(sticky={"by": "random"}, steps=[50, 100], interval_s=60, min_requests=5)
    put = gateway.client.put("/admin/routes/iris", json={**changed, "timeout_s": 5})
    assert put.status_code == 200, put.text
    tick(gateway)  # the failures were measured under the policy replaced: they do not count
    assert canary_of(gateway) == (0, "progressing")

    plain = {"primary": {"model": "iris", "version": "1"}}
    assert gateway.client.put("/admin/routes/iris", json=plain).status_code == 200
    send(gateway, 5)
    tick(gateway)
    assert gateway.samples("driftgate_canary_weight_percent") == []
    assert gateway.state.canary_stats.routes() == set()  # its windows went with it


def test_a_canary_that_ended_leaves_no_windows_behind(start) -> None:
    """A route's windows (5,000 latencies per arm) stayed after its canary was promoted or
    rolled back; requests still in flight at the decision recreated them."""
    gateway, clock = with_canary(start, steps=[100])
    send(gateway, 10)
    clock.now += 61
    tick(gateway)
    assert gateway.state.routes.get("iris").canary is None  # promoted
    gateway.state.canary_stats.observe("iris", "canary", failed=False, seconds=0.01)  # late

    tick(gateway)

    assert gateway.state.canary_stats.routes() == set()


def test_a_canary_keeps_its_step_across_a_restart_with_a_routes_dir(runtime, tmp_path) -> None:
    raw = route(
        sticky={"by": "random"}, steps=[50, 100], interval_s=60, min_requests=5, latency_slack_s=1
    )
    with gateway_factory(runtime) as first_life:
        gateway = first_life(routes={"iris": raw}, routes_dir=tmp_path / "routes")
        clock = Clock()
        assert gateway.state.canary is not None
        gateway.state.canary.clock = clock
        tick(gateway)
        send(gateway, 20)
        clock.now += 61
        tick(gateway)
        assert canary_of(gateway) == (1, "progressing")

    with gateway_factory(runtime) as second_life:
        gateway = second_life(routes={"iris": raw}, routes_dir=tmp_path / "routes")
        assert canary_of(gateway) == (1, "progressing")


class Collected(logging.Handler):
    """Records of one logger (Litestar's start-up replaces the root handlers caplog uses)."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


def test_without_a_routes_dir_a_canary_warns_that_a_restart_starts_it_over(start) -> None:
    collected = Collected()
    logger = logging.getLogger("driftgate.gateway.canary")
    logger.addHandler(collected)
    try:
        with_canary(start, steps=[50, 100])
    finally:
        logger.removeHandler(collected)

    [warning] = [message for message in collected.messages if "routes_dir" in message]
    assert "route iris" in warning and "restart" in warning


def test_a_canary_on_a_version_the_runtime_does_not_have_is_rolled_back(start) -> None:
    raw = route(sticky={"by": "random"}, steps=[50, 100], interval_s=60, min_requests=5)
    raw["canary"]["target"] = {"model": "iris", "version": "9"}
    gateway = start(routes={"iris": raw})
    clock = Clock()
    assert gateway.state.canary is not None
    gateway.state.canary.clock = clock
    tick(gateway)

    assert (404, "canary") in send(gateway, 30)
    clock.now += 61
    tick(gateway)

    canary = gateway.state.routes.get("iris").canary
    assert canary is not None and canary.status == "rolled_back"

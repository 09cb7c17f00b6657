"""plan_route: arm choice, stickiness, version override, fallback order and shadow sampling."""

from __future__ import annotations

import gzip
import json
import os
import subprocess
import sys
import zlib
from collections import Counter
from typing import Any

import msgspec
import pytest

from gateway.planner import (
    FIELD_INFLATE_LIMIT,
    PRIMARY_ARM,
    Plan,
    RequestContext,
    ShadowPlan,
    json_body_fields,
    plan_route,
)
from gateway.policy import Compare, PolicyError, RoutePolicy, Target, parse_route

V1, V2, V3 = Target("titanic", "1"), Target("titanic", "2"), Target("titanic", "3")
PMML, ONNX = Target("titanic_pmml"), Target("titanic_onnx")

KEYS = [f"user-{i}" for i in range(10_000)]
#: JSON nested deeper than msgspec decodes (it gives up at about a thousand levels).
DEEP = b"[" * 5000 + b"]" * 5000


def route(**overrides: Any) -> RoutePolicy:
    """The titanic route with a 90/10 split sticky by subject, one fallback and no shadow."""
    raw: dict[str, Any] = {
        "primary": {"model": "titanic", "version": "1"},
        "split": {
            "sticky": {"by": "subject"},
            "arms": [
                {"name": "control", "target": {"model": "titanic", "version": "1"}, "weight": 90},
                {"name": "treatment", "target": {"model": "titanic", "version": "2"}, "weight": 10},
            ],
        },
        "fallback": [{"model": "titanic_pmml"}],
    }
    raw.update(overrides)
    return parse_route("titanic", raw)


def weights(control: int, treatment: int) -> dict[str, Any]:
    return {
        "sticky": {"by": "subject"},
        "arms": [
            {"name": "control", "target": {"model": "titanic", "version": "1"}, "weight": control},
            {
                "name": "treatment",
                "target": {"model": "titanic", "version": "2"},
                "weight": treatment,
            },
        ],
    }


def ctx(request_id: str = "req-1", **fields: Any) -> RequestContext:
    return RequestContext(route="titanic", request_id=request_id, **fields)


def arm_of(policy: RoutePolicy, subject: str) -> str | None:
    return plan_route(policy, ctx(subject=subject)).arm


def plans_by_arm(policy: RoutePolicy, subjects: list[str]) -> dict[str | None, Plan]:
    """One plan per arm, from subjects that between them reach every arm."""
    return {plan.arm: plan for plan in (plan_route(policy, ctx(subject=s)) for s in subjects)}


# ---- no split ------------------------------------------------------------------------------


def test_without_a_split_the_primary_answers_then_the_fallbacks_in_order() -> None:
    policy = parse_route(
        "titanic",
        {
            "primary": {"model": "titanic", "version": "1"},
            "fallback": [{"model": "titanic_pmml"}, {"model": "titanic_onnx"}],
        },
    )

    plan = plan_route(policy, ctx())

    assert plan == Plan(arm=PRIMARY_ARM, targets=(V1, PMML, ONNX), shadows=(), key_source=None)
    assert plan.answering == V1
    assert plan.fallbacks == (PMML, ONNX)


# ---- split: stickiness ---------------------------------------------------------------------


def test_the_same_subject_always_gets_the_same_arm() -> None:
    policy = route()
    for subject in KEYS[:200]:
        arms = {plan_route(policy, ctx(request_id=f"r{i}", subject=subject)).arm for i in range(5)}
        assert len(arms) == 1, subject


def test_the_chosen_arm_answers_and_the_fallback_chain_follows_it() -> None:
    policy = route()
    plans = plans_by_arm(policy, KEYS[:100])

    assert plans["control"].targets == (V1, PMML)
    assert plans["treatment"].targets == (V2, PMML)
    assert plans["control"].key_source == "subject"


def test_ten_thousand_keys_split_as_the_weights_say() -> None:
    policy = route()
    counts = Counter(arm_of(policy, key) for key in KEYS)

    assert abs(counts["control"] / len(KEYS) - 0.90) < 0.02
    assert abs(counts["treatment"] / len(KEYS) - 0.10) < 0.02


def test_three_arms_split_as_the_weights_say() -> None:
    split = weights(50, 30)
    split["arms"].append(
        {"name": "candidate", "target": {"model": "titanic", "version": "3"}, "weight": 20}
    )
    policy = route(split=split)
    counts = Counter(arm_of(policy, key) for key in KEYS)

    for name, share in {"control": 0.5, "treatment": 0.3, "candidate": 0.2}.items():
        assert abs(counts[name] / len(KEYS) - share) < 0.02, name


def test_moving_from_90_10_to_50_50_moves_only_keys_that_must_move() -> None:
    before = {key: arm_of(route(split=weights(90, 10)), key) for key in KEYS}
    after = {key: arm_of(route(split=weights(50, 50)), key) for key in KEYS}
    moved = Counter((before[key], after[key]) for key in KEYS if before[key] != after[key])

    # Nobody leaves the arm that grows; the arm that shrinks gives away 40 of its 90 points.
    assert moved[("treatment", "control")] == 0
    assert abs(moved[("control", "treatment")] / len(KEYS) - 0.40) < 0.02


def test_scaling_all_weights_moves_nobody() -> None:
    before = {key: arm_of(route(split=weights(90, 10)), key) for key in KEYS}
    after = {key: arm_of(route(split=weights(9, 1)), key) for key in KEYS}
    assert before == after


def test_shrinking_the_treatment_keeps_the_rest_of_it_sticky() -> None:
    before = {key: arm_of(route(split=weights(90, 10)), key) for key in KEYS}
    after = {key: arm_of(route(split=weights(95, 5)), key) for key in KEYS}

    assert all(after[key] == "control" for key in KEYS if before[key] == "control")
    stayed = sum(1 for key in KEYS if before[key] == after[key] == "treatment")
    assert abs(stayed / len(KEYS) - 0.05) < 0.01


def test_an_arm_of_weight_0_gets_no_traffic() -> None:
    policy = route(split=weights(0, 10))

    assert {arm_of(policy, key) for key in KEYS} == {"treatment"}


def test_a_drained_arms_target_may_be_a_shadow_and_is_called_once_per_request() -> None:
    """Mirrored, never answering: no request calls it twice (as answer and as shadow)."""
    policy = route(split=weights(0, 10), shadow=[{"target": {"model": "titanic", "version": "1"}}])

    plans = [plan_route(policy, ctx(f"req-{key}", subject=key)) for key in KEYS[:1000]]

    assert {plan.answering for plan in plans} == {V2}
    assert {plan.shadows for plan in plans} == {(ShadowPlan(V1),)}
    assert plan_route(policy, ctx(version="1")).shadows == ()  # asked for by URL: not twice


def test_raising_a_drained_arm_back_moves_only_the_users_it_takes_back() -> None:
    """Drained to 0 and raised back, the arm gets exactly the users it had: the points are
    fixed, the slices a function of the weights alone. Nobody else moves."""
    before = {key: arm_of(route(split=weights(90, 10)), key) for key in KEYS}
    drained = {key: arm_of(route(split=weights(0, 10)), key) for key in KEYS}
    restored = {key: arm_of(route(split=weights(90, 10)), key) for key in KEYS}

    assert restored == before
    moved = Counter((drained[key], restored[key]) for key in KEYS if drained[key] != restored[key])
    assert set(moved) == {("treatment", "control")}  # only into the arm raised back
    assert abs(moved[("treatment", "control")] / len(KEYS) - 0.90) < 0.02  # no more than must


def test_a_drained_arm_among_three_gives_its_users_to_the_others_and_gets_them_back() -> None:
    def three(control: int, treatment: int, candidate: int) -> RoutePolicy:
        split = weights(control, treatment)
        target = {"model": "titanic", "version": "3"}
        split["arms"].append({"name": "candidate", "target": target, "weight": candidate})
        return route(split=split)

    before = {key: arm_of(three(50, 30, 20), key) for key in KEYS}
    drained = {key: arm_of(three(50, 0, 20), key) for key in KEYS}

    assert "treatment" not in drained.values()
    assert all(drained[key] == before[key] for key in KEYS if before[key] != "treatment")
    assert {key: arm_of(three(50, 30, 20), key) for key in KEYS} == before


def test_routes_bucket_independently() -> None:
    policy = route(split=weights(50, 50))
    same = sum(
        plan_route(policy, RequestContext(route="titanic", request_id="r", subject=key)).arm
        == plan_route(policy, RequestContext(route="iris", request_id="r", subject=key)).arm
        for key in KEYS[:2000]
    )
    assert 0.45 < same / 2000 < 0.55  # the route name is part of the hash


def test_header_stickiness_reads_the_lower_cased_header() -> None:
    split = weights(50, 50) | {"sticky": {"by": "header", "name": "X-User"}}
    policy = route(split=split)

    arms = {
        plan_route(policy, ctx(request_id=f"r{i}", headers={"x-user": "alice"})).arm
        for i in range(20)
    }

    assert len(arms) == 1
    assert plan_route(policy, ctx(headers={"x-user": "alice"})).key_source == "header"
    # A header and a subject with the same value land together: the key is the value.
    assert arms == {plan_route(route(split=weights(50, 50)), ctx(subject="alice")).arm}


def test_field_stickiness_reads_a_top_level_json_field() -> None:
    split = weights(50, 50) | {"sticky": {"by": "field", "name": "passenger_id"}}
    policy = route(split=split)

    def plan_for(body: dict[str, Any], request_id: str) -> Plan:
        lookup = json_body_fields(json.dumps(body).encode())
        return plan_route(policy, ctx(request_id=request_id, body_field=lookup))

    arms = {plan_for({"passenger_id": 12, "fare": 7.25 + i}, f"r{i}").arm for i in range(20)}
    assert len(arms) == 1
    assert plan_for({"passenger_id": "12"}, "other").arm in arms  # 12 and "12" are one key
    assert plan_for({"passenger_id": 12}, "r").key_source == "field"


def test_a_number_is_the_same_key_however_json_writes_it() -> None:
    """``12.0`` (a float id, as pandas writes an integer column with gaps) and ``12`` were
    two keys: the same passenger changed arm with the client that sent it."""
    split = weights(50, 50) | {"sticky": {"by": "field", "name": "passenger_id"}}
    policy = route(split=split)

    def arm_for(body: bytes) -> str | None:
        return plan_route(policy, ctx(request_id="r", body_field=json_body_fields(body))).arm

    for key in KEYS[:200]:
        number = key.removeprefix("user-")
        assert arm_for(f'{{"passenger_id": {number}.0}}'.encode()) == arm_for(
            f'{{"passenger_id": "{number}"}}'.encode()
        )
    assert arm_for(b'{"passenger_id": 12.5}') == arm_for(b'{"passenger_id": "12.5"}')


#: Points of the arm hash pinned: a key's arm must never depend on the process (Python's
#: ``hash()`` is salted per process) nor change with an upgrade (it would move users).
PINNED = {"alice": "control", "user-1": "control", "user-3": "treatment", "user-10": "treatment"}


def test_arms_are_pinned_across_processes_and_releases() -> None:
    assert {key: arm_of(route(), key) for key in PINNED} == PINNED


def test_arms_do_not_depend_on_the_python_hash_seed() -> None:
    script = (
        "from tests.gateway.test_planner import KEYS, arm_of, route\n"
        "print(''.join('c' if arm_of(route(), k) == 'control' else 't' for k in KEYS[:500]))"
    )
    seen = {
        subprocess.run(
            [sys.executable, "-c", script],
            env={**os.environ, "PYTHONHASHSEED": seed},
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        for seed in ("0", "1", "4242")
    }
    assert len(seen) == 1
    assert seen.pop().strip() == "".join(
        "c" if arm_of(route(), k) == "control" else "t" for k in KEYS[:500]
    )


@pytest.mark.parametrize(
    ("sticky", "context"),
    [
        ({"by": "subject"}, {"subject": None}),
        ({"by": "subject"}, {"subject": ""}),
        ({"by": "header", "name": "X-User"}, {"headers": {}}),
        ({"by": "field", "name": "passenger_id"}, {"body_field": json_body_fields(b"not json")}),
        (
            {"by": "field", "name": "passenger_id"},
            {"body_field": json_body_fields(b'{"passenger_id": [1]}')},
        ),
        (
            {"by": "field", "name": "passenger_id"},
            {"body_field": json_body_fields(b'{"passenger_id": 1, "x": ' + DEEP + b"}")},
        ),
        ({"by": "field", "name": "passenger_id"}, {}),
        ({"by": "random"}, {"subject": "alice"}),
    ],
)
def test_a_missing_key_or_random_stickiness_hashes_the_request_id(
    sticky: dict[str, str], context: dict[str, Any]
) -> None:
    policy = route(split=weights(50, 50) | {"sticky": sticky})

    plans = [plan_route(policy, ctx(request_id=key, **context)) for key in KEYS[:2000]]

    assert {plan.key_source for plan in plans} == {"request_id"}
    share = sum(plan.arm == "control" for plan in plans) / len(plans)
    assert 0.45 < share < 0.55  # spread per request, not stuck on one arm
    assert plan_route(policy, ctx(request_id="same", **context)) == plan_route(
        policy, ctx(request_id="same", **context)
    )


# ---- version override ----------------------------------------------------------------------


def test_a_requested_version_bypasses_the_split_and_the_fallbacks() -> None:
    plan = plan_route(route(), ctx(subject="alice", version="3"))

    assert plan.arm is None
    assert plan.targets == (V3,)
    assert plan.key_source is None


def test_a_requested_version_uses_the_primarys_model() -> None:
    policy = parse_route("titanic", {"primary": {"model": "titanic_internal"}})
    assert plan_route(policy, ctx(version="7")).targets == (Target("titanic_internal", "7"),)


def test_a_requested_version_that_is_not_a_version_name_is_refused() -> None:
    with pytest.raises(PolicyError, match="not a valid version"):
        plan_route(route(), ctx(version="../2"))


def test_shadows_still_apply_to_a_requested_version_but_never_mirror_it_to_itself() -> None:
    policy = route(
        shadow=[
            {"target": {"model": "titanic", "version": "3"}},
            {"target": {"model": "titanic_onnx"}},
        ]
    )

    assert [s.target for s in plan_route(policy, ctx(version="2")).shadows] == [V3, ONNX]
    assert [s.target for s in plan_route(policy, ctx(version="3")).shadows] == [ONNX]


# ---- fallback ------------------------------------------------------------------------------


def test_fallbacks_keep_their_order_and_skip_the_target_that_already_answered() -> None:
    policy = route(
        fallback=[
            {"model": "titanic_onnx"},
            {"model": "titanic", "version": "2"},
            {"model": "titanic_pmml"},
        ]
    )
    plans = {
        plan.arm: plan for plan in (plan_route(policy, ctx(subject=key)) for key in KEYS[:100])
    }

    assert plans["control"].targets == (V1, ONNX, V2, PMML)
    assert plans["treatment"].targets == (V2, ONNX, PMML)


# ---- shadow --------------------------------------------------------------------------------


def shadowed(percent: float, request_ids: list[str] = KEYS) -> list[bool]:
    policy = route(shadow=[{"target": {"model": "titanic", "version": "3"}, "percent": percent}])
    return [bool(plan_route(policy, ctx(request_id=rid)).shadows) for rid in request_ids]


@pytest.mark.parametrize("percent", [1, 25, 50, 90])
def test_shadow_percent_is_the_share_of_requests_mirrored(percent: float) -> None:
    assert abs(sum(shadowed(percent)) / len(KEYS) - percent / 100) < 0.02


def test_shadow_zero_and_hundred_percent_are_exact() -> None:
    assert not any(shadowed(0))
    assert all(shadowed(100))


def test_the_same_request_id_always_decides_the_same() -> None:
    assert shadowed(25) == shadowed(25)
    policy = route(shadow=[{"target": {"model": "titanic", "version": "3"}, "percent": 25}])
    subjects = [plan_route(policy, ctx(request_id="r-42", subject=s)).shadows for s in KEYS[:50]]
    assert len({len(s) for s in subjects}) == 1  # the subject plays no part


def test_shadowing_is_independent_of_the_arm() -> None:
    policy = route(
        split=weights(50, 50) | {"sticky": {"by": "random"}},
        shadow=[{"target": {"model": "titanic", "version": "3"}, "percent": 25}],
    )
    plans = [plan_route(policy, ctx(request_id=rid)) for rid in KEYS]
    for arm in ("control", "treatment"):
        in_arm = [plan for plan in plans if plan.arm == arm]
        assert abs(sum(bool(p.shadows) for p in in_arm) / len(in_arm) - 0.25) < 0.03, arm


def test_a_smaller_shadow_mirrors_a_subset_of_a_larger_ones_requests() -> None:
    policy = route(
        shadow=[
            {"target": {"model": "titanic", "version": "3"}, "percent": 10},
            {"target": {"model": "titanic_onnx"}, "percent": 50},
        ]
    )
    for rid in KEYS[:2000]:
        mirrored = {s.target for s in plan_route(policy, ctx(request_id=rid)).shadows}
        assert V3 not in mirrored or ONNX in mirrored


def test_shadow_plans_carry_the_compare_rule() -> None:
    compare = {"kind": "numeric", "output": "probability", "tolerance": 0.05}
    policy = route(shadow=[{"target": {"model": "titanic_onnx"}, "compare": compare}])

    assert plan_route(policy, ctx()).shadows == (
        ShadowPlan(
            target=ONNX, compare=Compare(kind="numeric", output="probability", tolerance=0.05)
        ),
    )


def test_plans_encode_for_logs_and_traces() -> None:
    plan = plan_route(route(), ctx(subject="alice"))
    assert msgspec.json.decode(msgspec.json.encode(plan), type=Plan) == plan


def test_json_body_fields_only_sees_top_level_fields_of_an_object() -> None:
    lookup = json_body_fields(b'{"passenger_id": 12, "inputs": {"fare": 7}}')
    assert lookup("passenger_id") == 12
    assert lookup("fare") is None
    assert json_body_fields(b"[1, 2]")("passenger_id") is None
    assert json_body_fields(b"\x89PNG...")("passenger_id") is None


def test_json_body_fields_reads_a_compressed_body_as_the_runtime_does() -> None:
    """A gzip body (which the runtime accepts) had no fields: a route sticky by a body field
    sent its requests to arms by request id, not sticky at all."""
    body = b'{"passenger_id": 12, "fare": 7}'
    assert json_body_fields(gzip.compress(body), "gzip", 1024)("passenger_id") == 12
    assert json_body_fields(zlib.compress(body), "deflate", 1024)("passenger_id") == 12
    assert json_body_fields(gzip.compress(body), "gzip", 10)("passenger_id") is None  # limit
    assert json_body_fields(b"not gzip", "gzip", 1024)("passenger_id") is None
    assert json_body_fields(body, "br", 1024)("passenger_id") is None  # the runtime's 415


def test_a_compressed_body_is_inflated_on_the_request_path_only_so_far() -> None:
    """A few KiB of gzip inflating to 16 MiB held the event loop ~80 ms per request; and a
    max_body_bytes past zlib's range (1e19) raised OverflowError: 500 for every request."""
    padded = b'{"passenger_id": 12, "pad": "' + b" " * FIELD_INFLATE_LIMIT + b'"}'
    assert json_body_fields(gzip.compress(padded), "gzip", 10**8)("passenger_id") is None
    small = gzip.compress(b'{"passenger_id": 12}')
    assert json_body_fields(small, "gzip", 10**19)("passenger_id") == 12


def test_a_body_nested_too_deeply_to_decode_has_no_fields() -> None:
    """msgspec raises RecursionError (no DecodeError) past about a thousand levels."""
    assert json_body_fields(b'{"passenger_id": 12, "x": ' + DEEP + b"}")("passenger_id") is None
    assert json_body_fields(b'{"passenger_id": ' + DEEP + b"}")("passenger_id") is None
    assert json_body_fields(b'{"passenger_id": 12, "x": [[1]]}')("passenger_id") == 12

"""The admin API changes routing while the gateway runs: A/B weights, bad policies, restarts.

``PUT /admin/routes/{model}`` replaces a route's policy; the next request uses it, an
invalid one is refused naming the field (the old policy keeps serving), and a valid one is
written to ``routes_dir`` so that a restarted gateway starts with it (docs/routing.md).
With the ``ETag`` a ``GET`` answered as ``If-Match``, a ``PUT`` never overwrites a change
made since (by a colleague, another gateway or the canary): it answers 412 instead.
"""

from __future__ import annotations

import fcntl
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import yaml

from gateway.auth import AuthConfig, mint_token
from gateway.policy import parse_route, route_to_dict
from gateway.route_files import WRITE_LOCK_NAME
from tests.gateway.fakes import (
    SECRET,
    Gateway,
    gateway_settings,
)

INFER = "/v2/models/iris/infer"
BODY = {"inputs": [{"name": "x", "shape": [1], "datatype": "FP32", "data": [1.0]}]}
AUTH = {"algorithm": "HS256", "secret": SECRET}
USERS = [f"user-{n}" for n in range(20)]


def ab_test(control: int, treatment: int) -> dict[str, Any]:
    """iris split by JWT subject: control on version 1, treatment on version 2."""
    return {
        "split": {
            "sticky": {"by": "subject"},
            "arms": [
                {"name": "control", "target": {"model": "iris", "version": "1"}, "weight": control},
                {
                    "name": "treatment",
                    "target": {"model": "iris", "version": "2"},
                    "weight": treatment,
                },
            ],
        }
    }


def bearer(subject: str, *scopes: str) -> dict[str, str]:
    token = mint_token(AuthConfig.from_dict(AUTH), subject, scopes or ("predict",), 3600)
    return {"Authorization": f"Bearer {token}"}


ADMIN = bearer("ops", "admin")  # minted at import: lasts an hour, longer than the suite


def arm_of(gateway: Gateway, user: str) -> str:
    """The arm that answered ``user``; the version that answered must be that arm's."""
    answer = gateway.client.post(INFER, json=BODY, headers=bearer(user))
    assert answer.status_code == 200, answer.text
    arm = answer.headers["X-Driftgate-Arm"]
    assert answer.headers["X-Driftgate-Version"] == {"control": "1", "treatment": "2"}[arm]
    return arm


# --- A/B arms -------------------------------------------------------------------------------


def test_a_user_keeps_their_arm_and_the_arm_is_in_a_header(start) -> None:
    gateway = start(auth=AUTH, routes={"iris": ab_test(1, 1)})

    first = {user: arm_of(gateway, user) for user in USERS}
    again = {user: arm_of(gateway, user) for user in USERS}

    assert again == first
    assert set(first.values()) == {"control", "treatment"}  # 20 users: both arms in use


def test_requests_are_counted_per_arm(start) -> None:
    gateway = start(auth=AUTH, routes={"iris": ab_test(1, 1)})

    arms = [arm_of(gateway, user) for user in USERS]

    for arm in ("control", "treatment"):
        assert gateway.metric("driftgate_requests_total", arm=arm) == arms.count(arm)


def test_a_weight_change_takes_effect_on_the_next_request(start) -> None:
    gateway = start(auth=AUTH, routes={"iris": ab_test(1, 1)})
    before = {user: arm_of(gateway, user) for user in USERS}

    replaced = gateway.client.put("/admin/routes/iris", json=ab_test(1, 999), headers=ADMIN)

    assert replaced.status_code == 200
    assert replaced.json()["policy"]["split"]["arms"][1]["weight"] == 999
    after = {user: arm_of(gateway, user) for user in USERS}
    assert "control" in before.values()
    assert set(after.values()) == {"treatment"}  # no restart, and nobody moved to control


def test_an_arm_drained_to_weight_0_gets_no_traffic_and_keeps_its_place(start) -> None:
    gateway = start(auth=AUTH, routes={"iris": ab_test(1, 1)})
    before = {user: arm_of(gateway, user) for user in USERS}

    drained = gateway.client.put("/admin/routes/iris", json=ab_test(0, 1), headers=ADMIN)

    assert drained.status_code == 200, drained.text
    assert [arm["weight"] for arm in drained.json()["policy"]["split"]["arms"]] == [0, 1]
    assert {arm_of(gateway, user) for user in USERS} == {"treatment"}
    gateway.client.put("/admin/routes/iris", json=ab_test(1, 1), headers=ADMIN)
    assert {user: arm_of(gateway, user) for user in USERS} == before  # back where they were


def test_a_split_whose_every_arm_has_weight_0_is_refused(start) -> None:
    gateway = start(auth=AUTH, routes={"iris": ab_test(1, 1)})

    refused = gateway.client.put("/admin/routes/iris", json=ab_test(0, 0), headers=ADMIN)

    assert refused.status_code == 400
    assert refused.json()["error"] == (
        "invalid route policy, nothing changed: routes.iris.split.arms: every arm has weight "
        "0, so none could answer: give at least one a weight > 0"
    )


def test_get_route_spells_out_every_effective_value(start) -> None:
    gateway = start(auth=AUTH)

    answer = gateway.client.get("/admin/routes/iris", headers=ADMIN)

    assert answer.json() == {
        "route": "iris",
        "configured": False,
        "policy": {
            "primary": {"model": "iris"},
            "shadow": [],
            "fallback": [],
            "retries": 1,
            "timeout_s": 15.0,
            "circuit_breaker": {"failures": 5, "open_s": 10.0},
        },
    }


# --- invalid policies -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("change", "error"),
    [
        (
            {"split": {"arms": [{"name": "a", "target": {"model": "iris"}, "weight": -3}]}},
            "routes.iris.split.arms[0].weight: must be >= 0, got -3",
        ),
        ({"retries": "two"}, "routes.iris.retries: expected an integer, got 'two'"),
        ({"timeout_s": 1, "per_try_timeout_s": 2}, "routes.iris.per_try_timeout_s: must be <="),
        ({"split": {"weights": [1]}}, "routes.iris.split: unknown key 'weights'"),
    ],
    ids=["negative-weight", "wrong-type", "per-try-over-budget", "unknown-key"],
)
def test_an_invalid_policy_is_refused_naming_the_field_and_the_old_one_keeps_serving(
    start, change: dict[str, Any], error: str
) -> None:
    gateway = start(auth=AUTH, routes={"iris": ab_test(1, 1)})
    before = {user: arm_of(gateway, user) for user in USERS}

    refused = gateway.client.put("/admin/routes/iris", json=change, headers=ADMIN)

    assert refused.status_code == 400
    assert refused.json()["error"].startswith("invalid route policy, nothing changed: " + error)
    assert {user: arm_of(gateway, user) for user in USERS} == before
    policy = gateway.client.get("/admin/routes/iris", headers=ADMIN).json()["policy"]
    assert policy["split"]["arms"][0]["weight"] == 1
    assert gateway.metric("driftgate_route_updates_total", outcome="rejected") == 1


def test_a_body_that_is_not_json_is_refused(start) -> None:
    gateway = start(auth=AUTH)

    refused = gateway.client.put("/admin/routes/iris", content=b"weights: 1", headers=ADMIN)

    assert refused.status_code == 400
    assert "not valid JSON" in refused.json()["error"]


@pytest.mark.parametrize(
    "content_type", ["application/yaml", "text/yaml; charset=utf-8", "application/x-yaml"]
)
def test_a_policy_sent_as_yaml_is_415_saying_to_send_json_or_use_routes_set(
    start, content_type: str
) -> None:
    gateway = start(auth=AUTH, routes={"iris": ab_test(1, 1)})
    headers = {**ADMIN, "content-type": content_type}

    refused = gateway.client.put("/admin/routes/iris", content=b"retries: 2", headers=headers)

    assert refused.status_code == 415
    media_type = content_type.partition(";")[0]
    assert refused.json()["error"] == (
        f"the route policy is sent as {media_type}, and the admin API reads JSON: send it as "
        "JSON (content-type: application/json), or use driftgate routes set iris --file "
        "policy.yaml, which reads YAML. Nothing changed"
    )
    assert gateway.metric("driftgate_route_updates_total", outcome="rejected") == 1


def test_an_empty_body_is_refused_saying_it_is_empty(start) -> None:
    gateway = start(auth=AUTH, routes={"iris": ab_test(1, 1)})

    refused = gateway.client.put("/admin/routes/iris", content=b"", headers=ADMIN)

    assert refused.status_code == 400
    assert refused.json()["error"] == (
        "the body is empty: send the route's whole policy as JSON (GET answers one), "
        "nothing changed"
    )
    assert gateway.metric("driftgate_route_updates_total", outcome="rejected") == 1


def test_a_key_given_twice_is_refused_not_the_last_one_kept(start) -> None:
    gateway = start(auth=AUTH, routes={"iris": ab_test(1, 1)})
    body = b'{"split": {"arms": [{"name": "a", "weight": 1, "weight": 9,'
    body += b' "target": {"model": "iris"}}]}}'

    refused = gateway.client.put("/admin/routes/iris", content=body, headers=ADMIN)

    assert refused.status_code == 400
    assert refused.json()["error"] == (
        "invalid route policy, nothing changed: routes.iris: key 'weight' is given twice "
        "in one object (send it once)"
    )
    policy = gateway.client.get("/admin/routes/iris", headers=ADMIN).json()["policy"]
    assert policy["split"]["arms"][0]["weight"] == 1
    assert gateway.metric("driftgate_route_updates_total", outcome="rejected") == 1


# --- persistence ----------------------------------------------------------------------------


def test_a_replaced_route_is_persisted_and_loaded_by_a_restarted_gateway(
    start, tmp_path: Path
) -> None:
    settings = gateway_settings(
        auth=AUTH, routes={"iris": ab_test(1, 1)}, routes_dir=tmp_path / "routes"
    )
    gateway = start(settings)
    gateway.client.put("/admin/routes/iris", json=ab_test(1, 999), headers=ADMIN)

    saved = yaml.safe_load((tmp_path / "routes" / "iris.yaml").read_text())
    assert saved["split"]["arms"][1]["weight"] == 999

    restarted = start(settings)  # a new app from the same gateway.yaml
    answer = restarted.client.get("/admin/routes/iris", headers=ADMIN)
    assert answer.json()["policy"] == saved
    assert {arm_of(restarted, user) for user in USERS} == {"treatment"}


def test_without_a_routes_dir_a_change_lasts_until_restart(start) -> None:
    settings = gateway_settings(auth=AUTH, routes={"iris": ab_test(1, 1)})
    start(settings).client.put("/admin/routes/iris", json=ab_test(1, 999), headers=ADMIN)

    restarted = start(settings)

    policy = restarted.client.get("/admin/routes/iris", headers=ADMIN).json()["policy"]
    assert policy["split"]["arms"][1]["weight"] == 1


def test_a_put_the_routes_folder_cannot_take_is_a_503_and_the_old_policy_keeps_serving(
    start, tmp_path: Path
) -> None:
    """An unwritable routes_dir answered a bare 500 (PermissionError on .routes.lock)."""
    gateway = start(auth=AUTH, routes={"iris": ab_test(1, 1)}, routes_dir=tmp_path)
    before = {user: arm_of(gateway, user) for user in USERS}
    lock = tmp_path / WRITE_LOCK_NAME
    lock.mkdir()  # the lock cannot be opened (as root too, whom permissions do not stop)

    refused = gateway.client.put("/admin/routes/iris", json=ab_test(1, 999), headers=ADMIN)

    assert refused.status_code == 503
    assert refused.json()["error"] == (
        f"could not write the route file in {tmp_path}: Is a directory ({lock}); the policy "
        "in force is unchanged"
    )
    assert {user: arm_of(gateway, user) for user in USERS} == before
    assert get_route(gateway)[0]["split"]["arms"][1]["weight"] == 1
    assert not (tmp_path / "iris.yaml").exists()
    assert gateway.metric("driftgate_route_updates_total", route="iris", outcome="failed") == 1
    assert gateway.metric("driftgate_route_updates_total", outcome="applied") == 0


# --- who may use it -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/admin/routes"),
        ("GET", "/admin/routes/iris"),
        ("PUT", "/admin/routes/iris"),
        ("GET", "/admin/replicas"),
    ],
)
def test_the_admin_api_needs_the_admin_scope(start, method: str, path: str) -> None:
    gateway = start(auth=AUTH)
    body: dict[str, Any] | None = {} if method == "PUT" else None

    anonymous = gateway.client.request(method, path, json=body)
    predictor = gateway.client.request(method, path, json=body, headers=bearer("app1"))
    admin = gateway.client.request(method, path, json=body, headers=ADMIN)

    assert anonymous.status_code == 401
    assert predictor.status_code == 403
    assert 'scope="admin"' in predictor.headers["WWW-Authenticate"]
    assert admin.status_code == 200


def test_replicas_show_health_load_and_failures(start) -> None:
    gateway = start(auth=AUTH)

    replicas = gateway.client.get("/admin/replicas", headers=ADMIN).json()["replicas"]

    assert replicas == [
        {
            "url": url,
            "healthy": True,
            "ejected": False,
            "ejected_for_s": 0.0,
            "outstanding": 0,
            "consecutive_failures": 0,
        }
        for url in ("http://r1:9001", "http://r2:9002")
    ]


# --- concurrent changes: ETag and If-Match -----------------------------------------------------


def get_route(gateway: Gateway, name: str = "iris") -> tuple[dict[str, Any], str]:
    answer = gateway.client.get(f"/admin/routes/{name}", headers=ADMIN)
    assert answer.status_code == 200, answer.text
    return answer.json()["policy"], answer.headers["ETag"]


def put_route(gateway: Gateway, policy: dict[str, Any], if_match: str | None) -> Any:
    headers = ADMIN if if_match is None else {**ADMIN, "If-Match": if_match}
    return gateway.client.put("/admin/routes/iris", json=policy, headers=headers)


def test_a_route_put_back_with_the_etag_it_was_read_with_is_replaced(start) -> None:
    gateway = start(auth=AUTH, routes={"iris": ab_test(1, 1)})
    _, etag = get_route(gateway)

    replaced = put_route(gateway, ab_test(1, 999), if_match=etag)

    assert replaced.status_code == 200, replaced.text
    assert replaced.headers["ETag"] != etag
    assert get_route(gateway)[1] == replaced.headers["ETag"]  # what a next GET answers
    assert {arm_of(gateway, user) for user in USERS} == {"treatment"}


def test_the_etag_is_a_strong_validator_of_the_policy_alone(start, tmp_path: Path) -> None:
    """Equal policies have equal ETags, in every gateway; any change gives another."""
    one = start(auth=AUTH, routes={"iris": ab_test(1, 1)})
    other = start(auth=AUTH, routes_dir=tmp_path)  # iris only from a PUT

    put_route(other, ab_test(1, 1), if_match=None)

    assert get_route(one)[1] == get_route(other)[1]
    assert get_route(one)[1].startswith('"') and get_route(one)[1].endswith('"')
    put_route(other, ab_test(1, 2), if_match=None)
    assert get_route(one)[1] != get_route(other)[1]


def test_a_put_read_before_a_colleagues_change_is_refused_with_412_naming_the_etag_now(
    start,
) -> None:
    gateway = start(auth=AUTH, routes={"iris": ab_test(1, 1)})
    policy, read = get_route(gateway)
    assert put_route(gateway, ab_test(5, 5), if_match=None).status_code == 200  # a colleague
    _, now = get_route(gateway)

    policy["retries"] = 3  # the change made on what was read
    refused = put_route(gateway, policy, if_match=read)

    assert refused.status_code == 412
    assert refused.json()["etag"] == now == refused.headers["ETag"]
    assert f"its ETag is now {now}" in refused.json()["error"]
    assert "Nothing changed" in refused.json()["error"]
    assert get_route(gateway) == (route_to_dict(parse_route("iris", ab_test(5, 5))), now)
    assert gateway.metric("driftgate_route_updates_total", outcome="precondition_failed") == 1
    assert gateway.metric("driftgate_route_updates_total", outcome="applied") == 1


def test_a_put_read_before_the_canary_stepped_up_is_refused(start, tmp_path: Path) -> None:
    canary = {"target": {"model": "iris", "version": "2"}, "steps": [5, 50]}
    gateway = start(auth=AUTH, routes={"iris": {"canary": canary}}, routes_dir=tmp_path)
    policy, read = get_route(gateway)
    routes = gateway.state.routes
    stepped = parse_route("iris", {"canary": {**canary, "step": 1}})
    assert routes.replace_if_unchanged("iris", routes.get("iris"), stepped)  # the decider

    policy["timeout_s"] = 5  # the operator's change, on the policy at step 0
    refused = put_route(gateway, policy, if_match=read)

    assert refused.status_code == 412
    assert routes.get("iris") == stepped


def test_the_etag_is_checked_against_the_folder_another_gateway_wrote(
    start, tmp_path: Path
) -> None:
    """Gateway B has not read the folder again since A's PUT: its If-Match is still
    checked against what A wrote, under the lock every gateway writes under."""
    settings = gateway_settings(auth=AUTH, routes={"iris": ab_test(1, 1)}, routes_dir=tmp_path)
    one, other = start(settings), start(settings)
    policy, read = get_route(other)

    assert put_route(one, ab_test(5, 5), if_match=read).status_code == 200
    refused = put_route(other, {**policy, "retries": 3}, if_match=read)

    assert refused.status_code == 412
    assert refused.json()["etag"] == get_route(one)[1]
    saved = yaml.safe_load((tmp_path / "iris.yaml").read_text())
    assert saved == route_to_dict(parse_route("iris", ab_test(5, 5)))


def test_a_put_without_if_match_replaces_whatever_is_there(start) -> None:
    gateway = start(auth=AUTH, routes={"iris": ab_test(1, 1)})
    put_route(gateway, ab_test(5, 5), if_match=None)

    assert put_route(gateway, ab_test(1, 999), if_match=None).status_code == 200  # last wins


@pytest.mark.parametrize(
    ("configured", "status"), [(True, 200), (False, 412)], ids=["configured", "default"]
)
def test_if_match_star_replaces_only_a_configured_route(
    start, configured: bool, status: int
) -> None:
    gateway = start(auth=AUTH, routes={"iris": ab_test(1, 1)} if configured else {})

    answer = put_route(gateway, ab_test(1, 999), if_match="*")

    assert answer.status_code == status, answer.text
    assert gateway.state.routes.is_configured("iris") == configured
    if not configured:
        assert answer.json()["etag"] == get_route(gateway)[1]
        assert "iris is not configured" in answer.json()["error"]


def test_an_unconfigured_route_can_be_created_with_the_default_policys_etag(start) -> None:
    gateway = start(auth=AUTH)
    _, etag = get_route(gateway)  # "configured": false, the default policy

    assert put_route(gateway, ab_test(1, 999), if_match=etag).status_code == 200
    assert gateway.state.routes.is_configured("iris")


def test_if_match_takes_a_list_and_compares_strongly(start) -> None:
    gateway = start(auth=AUTH, routes={"iris": ab_test(1, 1)})
    _, etag = get_route(gateway)

    weak = put_route(gateway, ab_test(1, 2), if_match=f"W/{etag}")
    listed = put_route(gateway, ab_test(1, 2), if_match=f'"other", {etag}')

    assert weak.status_code == 412  # a weak tag never matches: If-Match compares strongly
    assert listed.status_code == 200


@pytest.mark.parametrize("header", ["3f9c", '"open', '*, "x"', ""])
def test_an_if_match_that_is_not_etags_is_refused_and_nothing_changes(start, header) -> None:
    gateway = start(auth=AUTH, routes={"iris": ab_test(1, 1)})
    before = get_route(gateway)

    refused = put_route(gateway, ab_test(1, 999), if_match=header)

    assert refused.status_code == 400
    assert refused.json()["error"].startswith("If-Match: expected * or quoted ETags")
    assert get_route(gateway) == before
    assert gateway.metric("driftgate_route_updates_total", outcome="rejected") == 1


def test_a_put_waiting_for_another_gateways_write_does_not_hold_up_other_requests(
    start, tmp_path: Path
) -> None:
    """The write waits for the folder's lock in a worker thread, not on the event loop."""
    gateway = start(auth=AUTH, routes={"iris": ab_test(1, 1)}, routes_dir=tmp_path)
    with ThreadPoolExecutor(2) as pool, (tmp_path / WRITE_LOCK_NAME).open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # another gateway is writing a route
        try:
            putting = pool.submit(put_route, gateway, ab_test(1, 999), None)
            time.sleep(0.2)
            reading = pool.submit(get_route, gateway)
            assert reading.result(timeout=5)[0]["split"]["arms"][1]["weight"] == 1
            assert not putting.done()
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
        assert putting.result(timeout=5).status_code == 200

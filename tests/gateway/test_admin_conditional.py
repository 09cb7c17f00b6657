"""Conditional requests on the admin routes API beyond ``If-Match`` (tests/gateway/test_admin.py).

``GET /admin/routes`` lists each route's ETag next to its policy, so that a client can
``PUT`` back what it listed with ``If-Match`` without reading the route again. ``GET
/admin/routes/{route}`` with ``If-None-Match`` answers ``304 Not Modified`` (the ETag, no
body) while the route still has one of those ETags, compared weakly (RFC 9110, 13.1.2).
The list has an ETag of its own, which changes whenever a route is added, replaced or
removed, and answers ``If-None-Match`` the same way: before, it had none, and a tool polling
the list read every policy every time.
"""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from tests.gateway.fakes import Gateway
from tests.gateway.test_admin import ADMIN, AUTH, ab_test, bearer, get_route, put_route

TITANIC = {"primary": {"model": "titanic", "version": "2"}, "retries": 2}

# --- the list's ETags -------------------------------------------------------------------------


def test_the_list_gives_each_route_its_etag_next_to_its_policy(start) -> None:
    gateway = start(auth=AUTH, routes={"iris": ab_test(1, 1), "titanic": TITANIC})

    listed = gateway.client.get("/admin/routes", headers=ADMIN)

    assert listed.status_code == 200, listed.text
    assert listed.json() == {
        name: {"etag": get_route(gateway, name)[1], "policy": get_route(gateway, name)[0]}
        for name in ("iris", "titanic")
    }


def test_a_route_listed_can_be_put_back_with_its_listed_etag_as_if_match(start) -> None:
    gateway = start(auth=AUTH, routes={"iris": ab_test(1, 1)})
    listed = gateway.client.get("/admin/routes", headers=ADMIN).json()["iris"]

    policy = {**listed["policy"], "retries": 3}
    replaced = put_route(gateway, policy, if_match=listed["etag"])
    again = put_route(gateway, {**listed["policy"], "retries": 2}, if_match=listed["etag"])

    assert replaced.status_code == 200, replaced.text
    assert again.status_code == 412  # the listed ETag is the route's, so it goes stale too
    after = gateway.client.get("/admin/routes", headers=ADMIN).json()["iris"]
    assert after == {"etag": replaced.headers["ETag"], "policy": policy}


def list_etag(gateway: Gateway) -> str:
    listed = gateway.client.get("/admin/routes", headers=ADMIN)
    assert listed.status_code == 200, listed.text
    return listed.headers["ETag"]


def test_the_lists_etag_changes_when_a_route_is_added_replaced_or_removed(
    start, tmp_path: Path
) -> None:
    gateway = start(auth=AUTH, routes={"iris": ab_test(1, 1)}, routes_dir=tmp_path)
    routes = gateway.state.routes
    first = list_etag(gateway)

    put_titanic = gateway.client.put("/admin/routes/titanic", json=TITANIC, headers=ADMIN)
    added = list_etag(gateway)
    put_route(gateway, ab_test(1, 999), if_match=None)
    replaced = list_etag(gateway)
    (tmp_path / "titanic.yaml").unlink()  # another gateway, or an operator, removed it
    assert [change.outcome for change in routes.apply(routes.scan())] == ["removed"]
    removed = list_etag(gateway)
    put_route(gateway, ab_test(1, 1), if_match=None)

    assert put_titanic.status_code == 200, put_titanic.text
    assert len({first, added, replaced, removed}) == 4
    assert list_etag(gateway) == first  # the same routes again: the same ETag
    assert first not in {get_route(gateway)[1], put_titanic.headers["ETag"]}  # not a route's


def test_gateways_serving_the_same_routes_answer_the_same_lists_etag(start) -> None:
    one = start(auth=AUTH, routes={"iris": ab_test(1, 1), "titanic": TITANIC})
    other = start(auth=AUTH, routes={"titanic": TITANIC, "iris": ab_test(1, 1)})

    assert list_etag(one) == list_etag(other) != list_etag(start(auth=AUTH))


def list_if_none_match(gateway: Gateway, value: str) -> httpx.Response:
    return gateway.client.get("/admin/routes", headers={**ADMIN, "If-None-Match": value})


@pytest.mark.parametrize(
    "header",
    ["{etag}", "W/{etag}", '"other", {etag}', "*"],
    ids=["same", "weak", "listed", "star"],
)
def test_a_list_with_the_etag_it_has_answers_304_with_the_etag_and_no_body(
    start, header: str
) -> None:
    gateway = start(auth=AUTH, routes={"iris": ab_test(1, 1)})
    etag = list_etag(gateway)

    answer = list_if_none_match(gateway, header.format(etag=etag))

    assert answer.status_code == 304, answer.text
    assert answer.headers["ETag"] == etag
    assert answer.content == b""


def test_a_list_after_a_change_answers_200_with_the_routes_and_the_new_etag(start) -> None:
    gateway = start(auth=AUTH, routes={"iris": ab_test(1, 1)})
    read = list_etag(gateway)
    changed = put_route(gateway, ab_test(1, 999), if_match=None)

    answer = list_if_none_match(gateway, read)

    assert answer.status_code == 200
    assert answer.headers["ETag"] != read
    assert answer.json()["iris"]["etag"] == changed.headers["ETag"]


def test_the_lists_if_none_match_is_authorised_first_and_refused_malformed(start) -> None:
    gateway = start(auth=AUTH, routes={"iris": ab_test(1, 1)})
    predictor = {**bearer("app1"), "If-None-Match": "*"}

    refused = list_if_none_match(gateway, "3f9c")

    assert gateway.client.get("/admin/routes", headers=predictor).status_code == 403
    assert refused.status_code == 400
    assert refused.json()["error"] == (
        "If-None-Match: expected * or quoted ETags as GET /admin/routes answers them "
        '(ETag: "3f9c...")'
    )


# --- If-None-Match ----------------------------------------------------------------------------


def get_if_none_match(gateway: Gateway, value: str, name: str = "iris") -> httpx.Response:
    return gateway.client.get(f"/admin/routes/{name}", headers={**ADMIN, "If-None-Match": value})


@pytest.mark.parametrize(
    "header",
    ["{etag}", "W/{etag}", '"other", {etag}', ' "other" ,W/{etag} ', "*"],
    ids=["same", "weak", "listed", "listed-weak-spaced", "star"],
)
def test_a_get_with_the_etag_it_has_answers_304_with_the_etag_and_no_body(
    start, header: str
) -> None:
    gateway = start(auth=AUTH, routes={"iris": ab_test(1, 1)})
    _, etag = get_route(gateway)

    answer = get_if_none_match(gateway, header.format(etag=etag))

    assert answer.status_code == 304, answer.text
    assert answer.headers["ETag"] == etag
    assert answer.content == b""


def test_a_get_after_a_change_answers_200_with_the_new_policy(start) -> None:
    gateway = start(auth=AUTH, routes={"iris": ab_test(1, 1)})
    _, read = get_route(gateway)
    changed = put_route(gateway, ab_test(1, 999), if_match=None)

    answer = get_if_none_match(gateway, read)

    assert answer.status_code == 200
    assert answer.headers["ETag"] == changed.headers["ETag"] != read
    assert answer.json()["policy"]["split"]["arms"][1]["weight"] == 999


def test_a_route_without_a_policy_of_its_own_compares_its_default_policys_etag(start) -> None:
    gateway = start(auth=AUTH)
    _, default = get_route(gateway)  # "configured": false

    assert get_if_none_match(gateway, default).status_code == 304
    assert get_if_none_match(gateway, "*").status_code == 304
    assert get_if_none_match(gateway, '"other"').status_code == 200


@pytest.mark.parametrize("header", ["3f9c", '"open', '*, "x"', ""])
def test_an_if_none_match_that_is_not_etags_is_refused_naming_the_header(
    start, header: str
) -> None:
    gateway = start(auth=AUTH, routes={"iris": ab_test(1, 1)})

    refused = get_if_none_match(gateway, header)

    assert refused.status_code == 400
    assert refused.json()["error"] == (
        "If-None-Match: expected * or quoted ETags as GET /admin/routes/{route} answers them "
        '(ETag: "3f9c...")'
    )


def test_if_none_match_does_not_skip_authorisation_or_an_unknown_name(start) -> None:
    gateway = start(auth=AUTH, routes={"iris": ab_test(1, 1)})
    _, etag = get_route(gateway)
    predictor = {**bearer("app1"), "If-None-Match": etag}

    assert gateway.client.get("/admin/routes/iris", headers=predictor).status_code == 403
    assert get_if_none_match(gateway, "*", name="-x").status_code == 404

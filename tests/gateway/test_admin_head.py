"""``HEAD`` on the admin API's reads: what ``GET`` answers, status and headers, without a body.

A tool checks a route's ETag, or that the gateway's admin API answers, without reading the
policies. Before, each answered ``405``.
"""

from __future__ import annotations

import pytest

from tests.gateway.test_admin import ADMIN, AUTH, ab_test, bearer


@pytest.mark.parametrize("path", ["/admin/routes", "/admin/routes/iris", "/admin/routes/titanic"])
def test_head_answers_the_status_and_headers_of_get_without_a_body(start, path: str) -> None:
    gateway = start(auth=AUTH, routes={"iris": ab_test(1, 1)})  # titanic: the default policy

    got = gateway.client.get(path, headers=ADMIN)
    head = gateway.client.head(path, headers=ADMIN)

    assert head.status_code == got.status_code == 200, head.text
    assert dict(head.headers) == dict(got.headers)  # the ETag, and the GET's length
    assert head.content == b""


def test_head_on_a_route_follows_its_etag_as_get_does(start) -> None:
    gateway = start(auth=AUTH, routes={"iris": ab_test(1, 1)})
    etag = gateway.client.head("/admin/routes/iris", headers=ADMIN).headers["ETag"]

    unchanged = gateway.client.head("/admin/routes/iris", headers={**ADMIN, "If-None-Match": etag})
    put = gateway.client.put("/admin/routes/iris", json=ab_test(5, 5), headers=ADMIN)
    changed = gateway.client.head("/admin/routes/iris", headers={**ADMIN, "If-None-Match": etag})

    assert (unchanged.status_code, unchanged.headers["ETag"]) == (304, etag)
    assert (changed.status_code, changed.headers["ETag"]) == (200, put.headers["ETag"])


def test_head_on_the_list_follows_its_etag_as_get_does(start) -> None:
    gateway = start(auth=AUTH, routes={"iris": ab_test(1, 1)})
    etag = gateway.client.head("/admin/routes", headers=ADMIN).headers["ETag"]

    unchanged = gateway.client.head("/admin/routes", headers={**ADMIN, "If-None-Match": etag})
    gateway.client.put("/admin/routes/iris", json=ab_test(5, 5), headers=ADMIN)
    changed = gateway.client.head("/admin/routes", headers={**ADMIN, "If-None-Match": etag})
    listed = gateway.client.get("/admin/routes", headers=ADMIN)

    assert (unchanged.status_code, unchanged.headers["ETag"]) == (304, etag)
    assert (changed.status_code, changed.headers["ETag"]) == (200, listed.headers["ETag"])
    assert listed.headers["ETag"] != etag
    assert changed.content == b""


def test_head_on_the_replicas_answers_as_get(start) -> None:
    gateway = start(auth=AUTH)

    head = gateway.client.head("/admin/replicas", headers=ADMIN)

    assert head.status_code == 200
    assert head.headers["content-type"] == "application/json"
    assert head.content == b""


@pytest.mark.parametrize("path", ["/admin/routes", "/admin/routes/iris", "/admin/replicas"])
def test_head_is_authorised_as_get(start, path: str) -> None:
    gateway = start(auth=AUTH)

    assert gateway.client.head(path).status_code == 401
    assert gateway.client.head(path, headers=bearer("app1")).status_code == 403


def test_head_on_a_name_no_route_can_have_is_404(start) -> None:
    gateway = start(auth=AUTH)

    assert gateway.client.head("/admin/routes/-x", headers=ADMIN).status_code == 404

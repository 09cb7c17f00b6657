"""``PUT /admin/routes/{route}`` with ``If-None-Match`` (RFC 9110, section 13.1.2).

``*`` creates a route only if it is not configured, never replacing one; a list of ETags
writes only if the route has none of them (compared weakly). Either refusal is ``412`` with
the route's ETag, and nothing changes. Without the header a ``PUT`` overwrote whatever was
there, silently.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.gateway.fakes import Gateway
from tests.gateway.test_admin import ADMIN, AUTH, ab_test, get_route

TITANIC = {"primary": {"model": "titanic", "version": "2"}, "retries": 2}


def put(gateway: Gateway, policy: dict[str, Any], name: str = "iris", **headers: str) -> Any:
    sent = {**ADMIN, **{key.replace("_", "-"): value for key, value in headers.items()}}
    return gateway.client.put(f"/admin/routes/{name}", json=policy, headers=sent)


def updates(gateway: Gateway, outcome: str) -> float:
    return gateway.metric("driftgate_route_updates_total", outcome=outcome) or 0


def test_star_refuses_to_replace_a_configured_route(start) -> None:
    gateway = start(auth=AUTH, routes={"iris": ab_test(1, 1)})
    before = get_route(gateway)

    refused = put(gateway, ab_test(5, 5), If_None_Match="*")

    assert refused.status_code == 412, refused.text
    assert refused.headers["ETag"] == refused.json()["etag"] == before[1]
    assert "already configured (If-None-Match: *" in refused.json()["error"]
    assert "Nothing changed" in refused.json()["error"]
    assert get_route(gateway) == before
    assert updates(gateway, "precondition_failed") == 1
    assert updates(gateway, "applied") == 0


def test_star_creates_a_route_that_is_not_configured(start) -> None:
    gateway = start(auth=AUTH, routes={"iris": ab_test(1, 1)})

    created = put(gateway, TITANIC, name="titanic", If_None_Match="*")

    assert created.status_code == 200, created.text
    assert created.json()["configured"] is True
    assert get_route(gateway, "titanic")[1] == created.headers["ETag"]
    again = put(gateway, {**TITANIC, "retries": 3}, name="titanic", If_None_Match="*")
    assert again.status_code == 412  # created once: now it is configured
    assert get_route(gateway, "titanic")[1] == created.headers["ETag"]


@pytest.mark.parametrize(
    "header", ["{etag}", "W/{etag}", '"other", {etag}'], ids=["same", "weak", "listed"]
)
def test_listed_etags_refuse_a_route_that_has_one_of_them(start, header: str) -> None:
    gateway = start(auth=AUTH, routes={"iris": ab_test(1, 1)})
    before = get_route(gateway)

    refused = put(gateway, ab_test(5, 5), If_None_Match=header.format(etag=before[1]))

    assert refused.status_code == 412, refused.text
    assert refused.json()["etag"] == before[1]
    assert "which If-None-Match lists" in refused.json()["error"]
    assert get_route(gateway) == before


def test_listed_etags_the_route_does_not_have_let_the_put_through(start) -> None:
    gateway = start(auth=AUTH, routes={"iris": ab_test(1, 1)})

    replaced = put(gateway, ab_test(5, 5), If_None_Match='"not-the-one", W/"nor-this"')

    assert replaced.status_code == 200, replaced.text
    assert get_route(gateway)[1] == replaced.headers["ETag"]


def test_if_match_is_checked_first_and_both_must_hold(start) -> None:
    gateway = start(auth=AUTH, routes={"iris": ab_test(1, 1)})
    _, etag = get_route(gateway)

    stale = put(gateway, ab_test(5, 5), If_Match='"stale"', If_None_Match='"other"')
    both = put(gateway, ab_test(5, 5), If_Match=etag, If_None_Match='"other"')

    assert stale.status_code == 412
    assert "If-Match does not match" in stale.json()["error"]
    assert both.status_code == 200, both.text


def test_a_malformed_if_none_match_is_refused_with_400_and_nothing_changes(start) -> None:
    gateway = start(auth=AUTH, routes={"iris": ab_test(1, 1)})
    before = get_route(gateway)

    refused = put(gateway, ab_test(5, 5), If_None_Match="not-quoted")

    assert refused.status_code == 400
    assert "If-None-Match" in refused.json()["error"]
    assert get_route(gateway) == before


def test_star_refuses_a_route_another_gateway_created_before_this_one_read_it(
    start, tmp_path: Path
) -> None:
    """The route is checked as ``routes_dir`` has it under the write lock, not as this
    gateway last read the folder: the colleague's route is not overwritten."""
    one = start(auth=AUTH, routes_dir=tmp_path)
    other = start(auth=AUTH, routes_dir=tmp_path)
    assert put(one, TITANIC, name="titanic", If_None_Match="*").status_code == 200
    created: httpx.Response = one.client.get("/admin/routes/titanic", headers=ADMIN)

    refused = put(other, {**TITANIC, "retries": 0}, name="titanic", If_None_Match="*")

    assert refused.status_code == 412, refused.text
    assert refused.json()["etag"] == created.headers["ETag"]
    assert (tmp_path / "titanic.yaml").read_text().count("retries: 2") == 1


def test_star_refuses_a_route_another_gateway_configured_with_the_default_policy(
    start, tmp_path: Path
) -> None:
    """A route configured with exactly the default policy has the ETag it had unconfigured:
    only whether it is configured tells the two apart, and that is checked under the write
    lock too, so the colleague's route is not overwritten."""
    one = start(auth=AUTH, routes_dir=tmp_path)
    other = start(auth=AUTH, routes_dir=tmp_path)
    default, unconfigured_etag = get_route(other, "titanic")
    created = put(one, default, name="titanic")
    assert created.headers["ETag"] == unconfigured_etag  # the same policy: the same ETag

    refused = put(other, {**TITANIC, "retries": 0}, name="titanic", If_None_Match="*")

    assert refused.status_code == 412, refused.text
    assert "already configured (If-None-Match: *" in refused.json()["error"]
    assert refused.json()["etag"] == unconfigured_etag
    assert (tmp_path / "titanic.yaml").read_text().count("retries: 0") == 0

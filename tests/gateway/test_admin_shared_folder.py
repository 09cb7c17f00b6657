"""Admin reads on gateways that share ``routes_dir`` answer the routes as the folder has them.

A ``PUT`` with ``If-Match`` is checked against the folder, under its lock, so the ETag it
takes is the one the folder's route has. Each gateway also reads the folder back every 2
seconds to serve what another one wrote; an admin ``GET`` that answered that in-memory copy
gave, for up to 2 seconds after another gateway's change, an ETag that no ``PUT`` could
match: ``driftgate routes weights`` read it, was refused, read it again, was refused again
and said that the route "changed again while this ran". So every admin read takes the
folder's changes first.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from gateway.route_watch import RouteFileWatcher
from tests.gateway.test_admin import ADMIN, AUTH, ab_test, get_route, put_route


@pytest.fixture(autouse=True)
def no_polling(monkeypatch: pytest.MonkeyPatch) -> None:
    """The folder is read only when a request asks for it: no poll comes to the rescue."""

    async def never(self: RouteFileWatcher) -> None:
        await asyncio.Event().wait()

    monkeypatch.setattr(RouteFileWatcher, "run", never)


def test_a_get_on_another_gateway_answers_a_put_at_once_and_its_etag_takes(
    start, tmp_path: Path
) -> None:
    one = start(auth=AUTH, routes={"iris": ab_test(1, 1)}, routes_dir=tmp_path)
    other = start(auth=AUTH, routes={"iris": ab_test(1, 1)}, routes_dir=tmp_path)

    written = put_route(one, ab_test(1, 3), if_match=get_route(one)[1])
    policy, etag = get_route(other)
    again = put_route(other, ab_test(1, 9), if_match=etag)

    assert written.status_code == 200, written.text
    assert (policy, etag) == (written.json()["policy"], written.headers["ETag"])
    assert again.status_code == 200, again.text
    assert other.metric("driftgate_route_updates_total", operation="reload") == 1


def test_the_list_on_another_gateway_answers_a_put_and_a_delete_at_once(
    start, tmp_path: Path
) -> None:
    one = start(auth=AUTH, routes_dir=tmp_path)
    other = start(auth=AUTH, routes_dir=tmp_path)

    put_route(one, ab_test(1, 3), if_match=None)
    listed = other.client.get("/admin/routes", headers=ADMIN).json()
    removed = one.client.delete("/admin/routes/iris", headers=ADMIN)
    after = other.client.get("/admin/routes", headers=ADMIN).json()

    assert list(listed) == ["iris"]
    assert removed.status_code == 200, removed.text
    assert after == {}

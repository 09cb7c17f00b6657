"""``DELETE /admin/routes/{route}`` removes what the admin API set (docs/gateway.md, "The
admin API"): a route created by a typo goes (its file in ``routes_dir`` with it), a
gateway.yaml route whose policy a ``PUT`` overrode gets gateway.yaml's policy back, and a
route only gateway.yaml configures is refused with 409 naming gateway.yaml. Before, a route
could only be removed by deleting its file by hand.

The removal is a write like a ``PUT``: under the lock of ``routes_dir``, with ``If-Match``,
seen by every gateway sharing the folder, and never half done when a ``PUT`` races it.
"""

from __future__ import annotations

import contextlib
import logging
import pathlib
import re
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import yaml

from gateway import route_table
from gateway.canary_removal import canary_discarded
from gateway.policy import default_route, parse_route, route_to_dict
from gateway.route_conditions import RouteNotRemovable
from gateway.route_files import WRITE_LOCK_NAME, Fingerprint, read_fingerprints
from gateway.route_table import RouteTable
from tests.gateway.fakes import Gateway, gateway_settings
from tests.gateway.test_admin import ADMIN, AUTH, ab_test, bearer, get_route
from tests.gateway.test_canary import Clock, Collected, tick
from tests.gateway.test_route_files import CONFIGURED, policy, reload, reload_from

TYPO = {"primary": {"model": "iris", "version": "2"}, "retries": 2}
IRIS = {"primary": {"model": "iris", "version": "1"}}


def delete(gateway: Gateway, name: str, if_match: str | None = None) -> Any:
    headers = ADMIN if if_match is None else {**ADMIN, "If-Match": if_match}
    return gateway.client.delete(f"/admin/routes/{name}", headers=headers)


def put(gateway: Gateway, name: str, body: dict[str, Any]) -> None:
    answer = gateway.client.put(f"/admin/routes/{name}", json=body, headers=ADMIN)
    assert answer.status_code == 200, answer.text


def infer(gateway: Gateway, name: str) -> Any:
    body = {"inputs": [{"name": "x", "shape": [1], "datatype": "FP32", "data": [1.0]}]}
    return gateway.client.post(f"/v2/models/{name}/infer", json=body, headers=bearer("app1"))


# --- what a DELETE removes ------------------------------------------------------------------


def test_a_route_created_by_a_typo_is_removed_with_its_file(start, tmp_path: Path) -> None:
    gateway = start(auth=AUTH, routes_dir=tmp_path)
    before = infer(gateway, "irsi")  # what a model without a route gets
    put(gateway, "irsi", TYPO)
    assert infer(gateway, "irsi").status_code == 200  # the typo route answers from iris

    removed = delete(gateway, "irsi")

    assert removed.status_code == 200, removed.text
    default = route_to_dict(default_route("irsi"))
    assert removed.json() == {
        "route": "irsi",
        "configured": False,
        "policy": default,
        "removed": "route irsi removed: it is no longer configured, and requests for irsi "
        "are served like any model without a route (the default policy)",
    }
    assert removed.headers["ETag"] == get_route(gateway, "irsi")[1]
    assert not (tmp_path / "irsi.yaml").exists()
    assert "irsi" not in gateway.client.get("/admin/routes", headers=ADMIN).json()
    after = infer(gateway, "irsi")
    assert (after.status_code, after.json()) == (before.status_code, before.json())
    assert after.status_code == 404  # the replicas have no model irsi
    applied = {
        labels["operation"]: value
        for labels, value in gateway.samples("driftgate_route_updates_total")
        if labels["route"] == "irsi" and labels["outcome"] == "applied"
    }
    assert applied == {"put": 1, "delete": 1}


def test_an_override_of_gateway_yaml_is_removed_and_gateway_yaml_serves_again(
    start, tmp_path: Path
) -> None:
    gateway = start(auth=AUTH, routes={"iris": IRIS}, routes_dir=tmp_path)
    put(gateway, "iris", ab_test(1, 999))

    removed = delete(gateway, "iris")

    assert removed.status_code == 200, removed.text
    assert removed.json()["configured"] is True
    assert removed.json()["policy"] == route_to_dict(parse_route("iris", IRIS))
    assert removed.json()["removed"] == (
        "the policy set through the admin API for route iris removed: gateway.yaml's policy "
        "serves again"
    )
    assert not (tmp_path / "iris.yaml").exists()
    answered = infer(gateway, "iris")
    assert answered.headers["X-Driftgate-Version"] == "1"
    assert answered.headers["X-Driftgate-Arm"] == "primary"


def test_a_route_only_in_gateway_yaml_is_refused_with_409_naming_it(start, tmp_path: Path) -> None:
    gateway = start(auth=AUTH, routes={"iris": IRIS}, routes_dir=tmp_path)
    before = get_route(gateway)

    refused = delete(gateway, "iris")

    assert refused.status_code == 409
    assert refused.json()["error"] == (
        "route iris is configured in gateway.yaml, not through the admin API: remove or "
        "change it there (the gateway reads it at start). Nothing changed"
    )
    assert get_route(gateway) == before
    assert gateway.metric("driftgate_route_updates_total", outcome="rejected") == 1


@pytest.mark.parametrize("name", ["titanc", "-x"])
def test_a_route_not_configured_is_404(start, tmp_path: Path, name: str) -> None:
    gateway = start(auth=AUTH, routes_dir=tmp_path)

    refused = delete(gateway, name)

    assert refused.status_code == 404
    assert gateway.metric("driftgate_route_updates_total", outcome="rejected") == 1
    assert gateway.metric("driftgate_route_updates_total", outcome="applied") == 0


def test_refusals_of_routes_not_configured_share_one_metric_label(start, tmp_path: Path) -> None:
    """Names come from callers: a series per refused name would grow without bound."""
    gateway = start(auth=AUTH, routes={"iris": IRIS}, routes_dir=tmp_path)

    for index in range(20):
        assert delete(gateway, f"never-configured-{index}").status_code == 404
        refused = gateway.client.put(f"/admin/routes/typo-{index}", json=[], headers=ADMIN)
        assert refused.status_code == 400
    assert delete(gateway, "iris").status_code == 409  # configured: counted under its name

    counted = {
        (labels["route"], labels["operation"], labels["outcome"]): value
        for labels, value in gateway.samples("driftgate_route_updates_total")
    }
    assert counted == {
        ("_unknown", "delete", "rejected"): 20,
        ("_unknown", "put", "rejected"): 20,
        ("iris", "delete", "rejected"): 1,
    }


def test_a_removal_needs_the_admin_scope(start, tmp_path: Path) -> None:
    gateway = start(auth=AUTH, routes_dir=tmp_path)
    put(gateway, "irsi", TYPO)

    anonymous = gateway.client.delete("/admin/routes/irsi")
    predictor = gateway.client.delete("/admin/routes/irsi", headers=bearer("app1"))

    assert (anonymous.status_code, predictor.status_code) == (401, 403)
    assert (tmp_path / "irsi.yaml").exists()


def test_without_a_routes_dir_the_policy_put_in_memory_is_removed(start) -> None:
    gateway = start(auth=AUTH, routes={"iris": IRIS})
    put(gateway, "iris", ab_test(1, 999))
    put(gateway, "irsi", TYPO)

    assert delete(gateway, "iris").json()["policy"] == route_to_dict(parse_route("iris", IRIS))
    assert delete(gateway, "irsi").json()["configured"] is False
    assert delete(gateway, "iris").status_code == 409  # gateway.yaml's own, now
    assert delete(gateway, "irsi").status_code == 404


def test_a_removal_is_logged(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    table = RouteTable(CONFIGURED, tmp_path)
    table.replace("titanic", policy("2"))
    table.replace("titanc", policy("2"))

    caplog.clear()
    with caplog.at_level(logging.INFO, logger="driftgate.gateway.routes"):
        table.remove("titanic")
        table.remove("titanc")

    assert caplog.messages == [
        "route titanic removed: gateway.yaml's policy serves again",
        "route titanc removed: no longer configured (the default policy)",
    ]


def test_a_delete_the_routes_folder_cannot_take_is_a_503_and_the_policy_keeps_serving(
    start, tmp_path: Path
) -> None:
    gateway = start(auth=AUTH, routes_dir=tmp_path)
    put(gateway, "iris", IRIS)
    lock = tmp_path / WRITE_LOCK_NAME
    lock.unlink()
    lock.mkdir()  # the lock cannot be opened (as root too, whom permissions do not stop)

    refused = delete(gateway, "iris")

    assert refused.status_code == 503
    assert refused.json()["error"] == (
        f"could not remove the route file in {tmp_path}: Is a directory ({lock}); the "
        "policy in force is unchanged"
    )
    assert get_route(gateway)[0] == route_to_dict(parse_route("iris", IRIS))
    assert (tmp_path / "iris.yaml").is_file()
    assert infer(gateway, "iris").headers["X-Driftgate-Version"] == "1"
    assert (
        gateway.metric("driftgate_route_updates_total", operation="delete", outcome="failed") == 1
    )


# --- If-Match ---------------------------------------------------------------------------------


def test_a_removal_read_before_a_colleagues_change_is_refused_with_412(
    start, tmp_path: Path
) -> None:
    gateway = start(auth=AUTH, routes_dir=tmp_path)
    put(gateway, "irsi", TYPO)
    _, read = get_route(gateway, "irsi")
    put(gateway, "irsi", {**TYPO, "retries": 3})  # a colleague's change
    _, now = get_route(gateway, "irsi")

    refused = delete(gateway, "irsi", if_match=read)
    removed = delete(gateway, "irsi", if_match=now)

    assert refused.status_code == 412
    assert refused.json()["etag"] == now == refused.headers["ETag"]
    assert (
        "DELETE with the new ETag if it should still go. Nothing changed"
        in (refused.json()["error"])
    )
    assert removed.status_code == 200, removed.text
    assert gateway.metric("driftgate_route_updates_total", outcome="precondition_failed") == 1


def test_a_put_read_before_a_removal_is_refused(start, tmp_path: Path) -> None:
    gateway = start(auth=AUTH, routes={"iris": IRIS}, routes_dir=tmp_path)
    put(gateway, "iris", ab_test(1, 999))
    _, read = get_route(gateway)
    delete(gateway, "iris")

    refused = gateway.client.put(
        "/admin/routes/iris", json=ab_test(1, 5), headers={**ADMIN, "If-Match": read}
    )

    assert refused.status_code == 412
    assert refused.json()["etag"] == policy_etag_of(IRIS)
    assert not (tmp_path / "iris.yaml").exists()


def policy_etag_of(body: dict[str, Any]) -> str:
    from gateway.route_conditions import policy_etag

    return policy_etag(parse_route("iris", body))


# --- several gateways, and races --------------------------------------------------------------


def test_another_gateway_sees_the_removal_and_this_one_counts_it_once(tmp_path: Path) -> None:
    here, there = RouteTable(CONFIGURED, tmp_path), RouteTable(CONFIGURED, tmp_path)
    here.replace("titanic", policy("2"))
    here.replace("titanc", policy("2"))
    assert sorted(reload(there)) == [("titanc", "applied"), ("titanic", "applied")]

    assert here.remove("titanic") == CONFIGURED["titanic"]
    assert here.remove("titanc") is None

    assert sorted(reload(there)) == [("titanc", "removed"), ("titanic", "removed")]
    assert there.get("titanic") == CONFIGURED["titanic"]
    assert not there.is_configured("titanc")
    assert reload(here) == []  # its own removal is no change to count again
    assert here.configured() == there.configured()


def test_a_removal_returns_the_policy_it_removed_as_the_folder_had_it(tmp_path: Path) -> None:
    """The answer's canary_discarded described the policy read before the write lock was
    taken: a canary step another gateway wrote in between was not the one removed."""
    here, there = RouteTable(CONFIGURED, tmp_path), RouteTable(CONFIGURED, tmp_path)
    here.replace("titanc", policy("2"))
    there.replace("titanc", policy("3"))  # this gateway has not read the folder since

    removed, restored = here.remove_route("titanc")

    assert (removed, restored) == (policy("3"), None)


def test_a_scan_begun_before_the_removal_does_not_bring_the_route_back(tmp_path: Path) -> None:
    here, there = RouteTable(CONFIGURED, tmp_path), RouteTable(CONFIGURED, tmp_path)
    there.replace("titanc", policy("2"))
    scan = here.scan()  # reads titanc.yaml, the other gateway's new route

    here.remove("titanc")  # meanwhile, an operator removes it through this gateway

    assert reload_from(here, scan) == []
    assert not here.is_configured("titanc")
    assert reload(here) == []
    assert not here.is_configured("titanc")


def test_a_scan_racing_the_removal_does_not_count_it_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The watcher (a worker thread, then the event loop) reads the folder right after the
    unlink: it took the removal for another gateway's, counted and logged it a second
    time, unless it waited for the removal to be marked as this table's."""
    table = RouteTable(CONFIGURED, tmp_path)
    table.replace("titanc", policy("2"))
    unlink = pathlib.Path.unlink
    seen: list[tuple[str, str]] = []
    watcher = threading.Thread(target=lambda: seen.extend(reload(table)))

    def unlink_then_the_watcher_reads(path: pathlib.Path, missing_ok: bool = False) -> None:
        unlink(path, missing_ok=missing_ok)
        if path.name == "titanc.yaml":
            watcher.start()
            watcher.join(timeout=1)  # done here, unless it waits for the removal

    monkeypatch.setattr(pathlib.Path, "unlink", unlink_then_the_watcher_reads)
    table.remove("titanc")
    watcher.join()

    assert seen == []
    assert not table.is_configured("titanc")


def test_a_file_removed_between_listing_and_reading_is_not_listed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Another gateway listed the folder, then a DELETE here removed a file before it read
    it: it logged an ERROR ("refused ... No such file") and counted it ``rejected``."""
    here, there = RouteTable(CONFIGURED, tmp_path), RouteTable(CONFIGURED, tmp_path)
    here.replace("titanc", policy("2"))
    listed = read_fingerprints

    def listed_then_removed(folder: Path) -> dict[str, Fingerprint]:
        found = listed(folder)
        here.remove("titanc")
        return found

    monkeypatch.setattr(route_table, "read_fingerprints", listed_then_removed)
    assert reload(there) == []

    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING] == []
    assert not there.is_configured("titanc")


def test_a_route_removed_here_and_written_again_elsewhere_applies(tmp_path: Path) -> None:
    here, there = RouteTable(CONFIGURED, tmp_path), RouteTable(CONFIGURED, tmp_path)
    here.replace("titanc", policy("2"))
    here.remove("titanc")

    there.replace("titanc", policy("3"))

    assert reload(here) == [("titanc", "applied")]
    assert here.get("titanc") == policy("3")


def test_the_removal_is_checked_under_the_lock_against_the_folder(tmp_path: Path) -> None:
    """Another gateway removed the file; this one has not read the folder since: its
    removal is refused as the folder has the route, not as its memory does."""
    here, there = RouteTable(CONFIGURED, tmp_path), RouteTable(CONFIGURED, tmp_path)
    here.replace("titanc", policy("2"))
    reload(there)
    here.remove("titanc")

    with pytest.raises(RouteNotRemovable) as refused:
        there.remove("titanc")
    assert not refused.value.in_gateway_yaml


def test_a_removal_racing_puts_leaves_memory_and_folder_agreeing(tmp_path: Path) -> None:
    table = RouteTable(CONFIGURED, tmp_path)

    def put_then_remove(round_: int) -> None:
        table.replace("titanic", policy(str(round_ % 3 + 2)))
        with contextlib.suppress(RouteNotRemovable):  # another thread removed it first
            table.remove("titanic")

    with ThreadPoolExecutor(4) as pool:
        list(pool.map(put_then_remove, range(40)))
    for _ in range(2):
        reload(table)

    on_disk = tmp_path / "titanic.yaml"
    fresh = RouteTable(CONFIGURED, tmp_path)  # what a gateway starting now would serve
    assert table.get("titanic") == fresh.get("titanic")
    if on_disk.exists():
        assert route_to_dict(table.get("titanic")) == yaml.safe_load(on_disk.read_text())
    else:
        assert table.get("titanic") == CONFIGURED["titanic"]


def test_a_restarted_gateway_does_not_serve_a_removed_route(start, tmp_path: Path) -> None:
    settings = gateway_settings(auth=AUTH, routes={"iris": IRIS}, routes_dir=tmp_path)
    gateway = start(settings)
    put(gateway, "iris", ab_test(1, 999))
    put(gateway, "irsi", TYPO)
    delete(gateway, "iris")
    delete(gateway, "irsi")

    restarted = start(settings)

    assert get_route(restarted)[0] == route_to_dict(parse_route("iris", IRIS))
    assert restarted.client.get("/admin/routes/irsi", headers=ADMIN).json()["configured"] is False


# --- a route with a canary --------------------------------------------------------------------

CANARY: dict[str, Any] = {
    "primary": {"model": "iris", "version": "1"},
    "canary": {
        "target": {"model": "iris", "version": "2"},
        "steps": [50, 75, 100],
        "interval_s": 60,
        "min_requests": 1,
        "latency_slack_s": 3600,  # a slow machine's latency must not roll it back here
        "sticky": {"by": "random"},
    },
}


def advance_once(gateway: Gateway) -> None:
    """Let the canary of route iris pass its first step (50%) to the second (75%)."""
    controller = gateway.state.canary
    assert controller is not None
    clock = controller.clock = Clock()
    tick(gateway)  # the first look starts the step's window
    for _ in range(20):
        assert infer(gateway, "iris").status_code == 200
    clock.now += 61
    tick(gateway)
    assert canary_shown(gateway)["step"] == 1


def canary_shown(gateway: Gateway) -> dict[str, Any]:
    shown: dict[str, Any] = get_route(gateway, "iris")[0]["canary"]
    return shown


def logged(logger: str, action: Callable[[], Any]) -> tuple[Any, list[str]]:
    """What ``action`` returns, and the INFO messages of ``logger`` meanwhile (Litestar's
    start-up replaced the root handlers that caplog reads)."""
    collected = Collected()
    collected.setLevel(logging.INFO)
    log = logging.getLogger(logger)
    level = log.level
    log.addHandler(collected)
    log.setLevel(logging.INFO)
    try:
        return action(), collected.messages
    finally:
        log.removeHandler(collected)
        log.setLevel(level)


def test_a_removal_ends_the_routes_canary_and_a_later_put_starts_a_new_one(
    start, tmp_path: Path
) -> None:
    gateway = start(routes_dir=tmp_path)
    put(gateway, "iris", CANARY)
    advance_once(gateway)

    removed, messages = logged("driftgate.gateway.routes", lambda: delete(gateway, "iris"))

    discarded = (
        "the canary of route iris (iris version 2, step 2 of 3, 75% of the traffic) ended and "
        "its progress is discarded; a later PUT with a canary section starts a new canary, "
        "from the step that PUT gives (the first unless it sets canary.step)"
    )
    assert removed.status_code == 200, removed.text
    assert removed.json()["canary_discarded"] == discarded
    assert discarded in messages
    assert list(tmp_path.glob("iris*")) == []  # nothing left that could bring 75% back
    tick(gateway)
    assert gateway.samples("driftgate_canary_weight_percent") == []

    put(gateway, "iris", CANARY)
    tick(gateway)

    assert (canary_shown(gateway)["step"], canary_shown(gateway)["status"]) == (0, "progressing")
    assert gateway.metric("driftgate_canary_weight_percent", route="iris") == 50


def test_removing_an_override_gives_gateway_yamls_canary_back_at_its_own_step(
    start, tmp_path: Path
) -> None:
    gateway = start(routes={"iris": CANARY}, routes_dir=tmp_path)
    advance_once(gateway)  # the decision is saved in routes_dir: it overrides gateway.yaml

    removed = delete(gateway, "iris")

    assert removed.json()["canary_discarded"] == (
        "the canary of route iris (iris version 2, step 2 of 3, 75% of the traffic) ended and "
        "its progress is discarded; gateway.yaml's canary (iris version 2) serves again as "
        "gateway.yaml writes it (step 1 of 3, 50% of the traffic)"
    )
    assert canary_shown(gateway)["step"] == 0


def test_a_removed_rolled_back_canary_is_named_with_its_reason() -> None:
    rolled_back = {**CANARY, "canary": {**CANARY["canary"], "status": "rolled_back"}}
    rolled_back["canary"]["reason"] = "error rate 4.00% (8 of 200) > 1.00%"

    said = canary_discarded("iris", parse_route("iris", rolled_back), None)

    assert said is not None and said.startswith(
        "the canary of route iris (iris version 2, rolled back: error rate 4.00% (8 of 200) > "
        "1.00%) ended and its progress is discarded;"
    )
    assert canary_discarded("iris", parse_route("iris", IRIS), None) is None


def test_routing_md_shows_the_sentence_a_removal_answers() -> None:
    """docs/routing.md, "Canary analysis": the sentence of a canary at 50% of four steps."""
    text = (Path(__file__).parents[2] / "docs" / "routing.md").read_text()
    [shown] = re.findall(r"```text\n *(the canary of route .*)\n *```", text)
    titanic = {
        "primary": {"model": "titanic", "version": "2"},
        "canary": {"target": {"model": "titanic", "version": "3"}, "step": 2},
    }

    assert canary_discarded("titanic", parse_route("titanic", titanic), None) == shown

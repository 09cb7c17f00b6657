"""Routes shared through ``routes_dir``: read back while the gateway runs, and one canary
decider among the gateways that share the folder (gateway/route_table.py, route_files.py,
route_watch.py, lease.py).

"Another gateway" is a second ``RouteTable`` on the same folder, as a second process would
have; the lease is also taken by a real child process, killed to hand it over.
"""

from __future__ import annotations

import asyncio
import fcntl
import itertools
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import yaml
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode
from prometheus_client import CollectorRegistry

from gateway.canary import CanaryController, CanaryStats
from gateway.canary_share import FORGET_S, STALE_S, SharedWindows
from gateway.canary_verdict import Verdict
from gateway.canary_window import ArmWindow
from gateway.lease import LOCK_NAME, FileLease
from gateway.policy import MAX_POLICY_BYTES, RoutePolicy, parse_route, route_to_dict
from gateway.route_conditions import RouteChanged, RouteMatched, policy_etag
from gateway.route_files import WRITE_LOCK_NAME
from gateway.route_table import FileScan, RouteTable
from gateway.route_watch import RouteFileWatcher
from monitoring.gateway_metrics import GatewayMetrics
from monitoring.tracing import build_tracer_provider

CONFIGURED = {"titanic": parse_route("titanic", {"primary": {"model": "titanic", "version": "1"}})}


def policy(version: str) -> RoutePolicy:
    return parse_route("titanic", {"primary": {"model": "titanic", "version": version}})


def reload(table: RouteTable) -> list[tuple[str, str]]:
    return reload_from(table, table.scan())


def reload_from(table: RouteTable, scan: FileScan) -> list[tuple[str, str]]:
    return [(change.route, change.outcome) for change in table.apply(scan)]


def test_a_change_written_by_another_gateway_applies_here(tmp_path: Path) -> None:
    here, there = RouteTable(CONFIGURED, tmp_path), RouteTable(CONFIGURED, tmp_path)

    there.replace("titanic", policy("2"))
    assert here.get("titanic") == policy("1")  # not before it looks

    assert reload(here) == [("titanic", "applied")]
    assert here.get("titanic") == policy("2")
    assert reload(here) == []  # nothing new


def test_its_own_writes_are_not_taken_again_and_an_equal_policy_keeps_its_object(
    tmp_path: Path,
) -> None:
    table = RouteTable(CONFIGURED, tmp_path)
    table.replace("titanic", policy("2"))
    in_use = table.get("titanic")

    assert reload(table) == []
    (tmp_path / "titanic.yaml").write_text(  # rewritten, same policy: a new inode and mtime
        (tmp_path / "titanic.yaml").read_text()
    )
    assert reload(table) == []
    assert table.get("titanic") is in_use  # the canary controller watches identity


def test_a_route_replaced_here_while_the_folder_was_read_is_not_undone_by_that_read(
    tmp_path: Path,
) -> None:
    here, there = RouteTable(CONFIGURED, tmp_path), RouteTable(CONFIGURED, tmp_path)
    there.replace("titanic", policy("2"))
    scan = here.scan()  # in a worker thread: it read version 2...
    here.replace("titanic", policy("3"))  # ...while an admin PUT here wrote version 3

    assert reload_from(here, scan) == []
    assert here.get("titanic") == policy("3")
    assert reload(here) == []  # and the file on disk is version 3 too
    assert parse_route("titanic", yaml.safe_load((tmp_path / "titanic.yaml").read_text())) == (
        policy("3")
    )


def test_an_invalid_file_is_refused_and_the_policy_in_use_stays(tmp_path: Path) -> None:
    table = RouteTable(CONFIGURED, tmp_path)
    (tmp_path / "titanic.yaml").write_text("primary: {model: titanic}\nretries: 9\n")

    changes = table.apply(table.scan())

    assert [(c.route, c.outcome) for c in changes] == [("titanic", "rejected")]
    assert "retries" in changes[0].error
    assert table.get("titanic") == policy("1")
    assert reload(table) == []  # refused once, not at every look
    (tmp_path / "titanic.yaml").write_bytes(b"primary: {model: \xff}\n")  # not UTF-8
    assert reload(table) == [("titanic", "rejected")]
    assert table.get("titanic") == policy("1")


def test_a_file_giving_a_key_twice_is_refused_not_read_as_its_last_value(tmp_path: Path) -> None:
    """As gateway.yaml: YAML would keep the last value silently, a hand edit half undone."""
    table = RouteTable(CONFIGURED, tmp_path)
    (tmp_path / "titanic.yaml").write_text(
        "primary: {model: titanic, version: '2'}\nretries: 1\nretries: 3\n"
    )

    changes = table.apply(table.scan())

    assert [(c.route, c.outcome) for c in changes] == [("titanic", "rejected")]
    assert "line 3: key 'retries' is given twice" in changes[0].error
    assert table.get("titanic") == policy("1")


def test_a_file_too_large_or_nested_too_deeply_is_refused_at_start_and_while_running(
    tmp_path: Path,
) -> None:
    large = "primary: {model: titanic}\n" + "#" * MAX_POLICY_BYTES
    deep = "shadow: " + "[" * 5000 + "]" * 5000  # PyYAML recurses on it
    (tmp_path / "titanic.yaml").write_text(large)
    (tmp_path / "iris.yaml").write_text(deep)

    table = RouteTable(CONFIGURED, tmp_path)  # at start: logged and ignored
    assert table.get("titanic") == policy("1")
    assert not table.is_configured("iris")

    (tmp_path / "titanic.yaml").write_text(large + "#")
    (tmp_path / "iris.yaml").write_text(deep + "\n")
    changes = {change.route: change for change in table.apply(table.scan())}

    assert {name: change.outcome for name, change in changes.items()} == {
        "iris": "rejected",
        "titanic": "rejected",
    }
    assert changes["titanic"].error == (
        f"titanic.yaml: {len(large) + 1} bytes exceeds the limit of 1048576 bytes"
    )
    assert changes["iris"].error == (
        "routes.iris: nested too deeply (more than 32 levels of lists and mappings)"
    )
    assert table.get("titanic") == policy("1")


def test_a_write_that_fails_leaves_no_temporary_file_and_changes_nothing(
    tmp_path: Path,
) -> None:
    table = RouteTable(CONFIGURED, tmp_path)
    too_long = "t" * 300  # "<name>.yaml" is over the 255 bytes a file name may have

    with pytest.raises(OSError, match="File name too long"):
        table.replace(too_long, policy("2"))

    assert list(tmp_path.iterdir()) == [tmp_path / WRITE_LOCK_NAME]  # the writers' lock only
    assert not table.is_configured(too_long)


def test_a_removed_file_gives_the_route_back_to_gateway_yaml_or_the_default(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    table = RouteTable(CONFIGURED, tmp_path)
    table.replace("titanic", policy("2"))
    table.replace("iris", parse_route("iris", {"retries": 3}))

    (tmp_path / "titanic.yaml").unlink()
    (tmp_path / "iris.yaml").unlink()

    with caplog.at_level(logging.INFO, logger="driftgate.gateway.routes"):
        assert sorted(reload(table)) == [("iris", "removed"), ("titanic", "removed")]
    assert table.get("titanic") == policy("1")
    assert not table.is_configured("iris")
    assert table.get("iris").retries == 1  # the default route
    # The log says which: iris is in no gateway.yaml, so it is no longer configured at all.
    assert sorted(r.getMessage() for r in caplog.records if "removed" in r.getMessage()) == [
        "route file iris.yaml removed: iris is no longer configured (the default policy)",
        "route file titanic.yaml removed: back to gateway.yaml's policy",
    ]


def test_the_watcher_counts_and_traces_each_change(tmp_path: Path) -> None:
    registry = CollectorRegistry()
    spans = InMemorySpanExporter()
    table = RouteTable(CONFIGURED, tmp_path)
    watcher = RouteFileWatcher(
        table, GatewayMetrics(registry), build_tracer_provider("test", spans).get_tracer("t")
    )
    RouteTable(CONFIGURED, tmp_path).replace("titanic", policy("2"))
    (tmp_path / "iris.yaml").write_text("retries: [not a number]\n")

    asyncio.run(watcher.reload())

    def count(route: str, outcome: str) -> float | None:
        return registry.get_sample_value(
            "driftgate_route_updates_total",
            {"route": route, "operation": "reload", "outcome": outcome},
        )

    assert (count("titanic", "applied"), count("iris", "rejected")) == (1.0, 1.0)
    traced = {s.name: s for s in spans.get_finished_spans()}
    assert set(traced) == {"reload route titanic", "reload route iris"}
    assert traced["reload route iris"].status.status_code is StatusCode.ERROR
    assert dict(traced["reload route titanic"].attributes or {}) == {
        "driftgate.route": "titanic",
        "driftgate.route.change": "applied",
    }


# --- one canary decider ------------------------------------------------------------------


def test_one_lease_holder_at_a_time_and_the_next_takes_over_on_release(tmp_path: Path) -> None:
    first, second = FileLease(tmp_path), FileLease(tmp_path)

    assert first.held()
    assert not second.held()
    first.release()
    assert second.held()
    assert not first.held()
    second.release()
    assert FileLease(None).held()  # no shared folder: every gateway decides for itself


def test_a_killed_lease_holder_hands_the_lease_over(tmp_path: Path) -> None:
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time; from pathlib import Path; from gateway.lease import FileLease; "
            "assert FileLease(Path(sys.argv[1])).held(); print('held', flush=True); "
            "time.sleep(60)",
            str(tmp_path),
        ],
        stdout=subprocess.PIPE,
        cwd=Path(__file__).parents[2],
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline() == b"held\n"
        waiting = FileLease(tmp_path)
        assert not waiting.held()
        os.kill(holder.pid, signal.SIGKILL)
        holder.wait(timeout=10)
        deadline = time.monotonic() + 5
        while not waiting.held():
            assert time.monotonic() < deadline
            time.sleep(0.05)
    finally:
        holder.kill()
        holder.wait()
    assert (tmp_path / LOCK_NAME).exists()


CANARY: dict[str, Any] = {
    "target": {"model": "titanic", "version": "2"},
    "steps": [10, 50],
    "interval_s": 1,
    "min_requests": 1,
}
CANARY_ROUTE: dict[str, Any] = {"primary": {"model": "titanic", "version": "1"}, "canary": CANARY}


@pytest.mark.parametrize("decides", [True, False])
def test_only_the_lease_holder_applies_canary_decisions(tmp_path: Path, decides: bool) -> None:
    table = RouteTable({"titanic": parse_route("titanic", CANARY_ROUTE)}, tmp_path)
    stats = CanaryStats()
    clock = [0.0]
    controller = CanaryController(
        table,
        stats,
        GatewayMetrics(CollectorRegistry()),
        build_tracer_provider("test").get_tracer("t"),
        clock=lambda: clock[0],
    )
    look(controller, decides=decides)  # starts watching the step
    for arm in ("stable", "canary"):
        stats.observe("titanic", arm, failed=False, seconds=0.01)
    clock[0] = 2.0

    verdicts = look(controller, decides=decides)

    assert verdicts["titanic"].action == "advance"  # both judge the same
    canary = table.get("titanic").canary
    assert canary is not None
    assert canary.step == (1 if decides else 0)
    assert (tmp_path / "titanic.yaml").exists() is decides


def test_a_put_on_another_gateway_is_not_overwritten_by_the_deciders_older_view(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The decider judged the route as it last read it, up to 2 seconds old: an operator's
    PUT on another gateway in between was overwritten by the decision, and lost on every
    gateway (the canary came back, or stepped up, right after the operator ended it)."""
    configured = {"titanic": parse_route("titanic", CANARY_ROUTE)}
    leader, other = RouteTable(configured, tmp_path), RouteTable(configured, tmp_path)
    stats, clock = CanaryStats(), [0.0]
    registry = CollectorRegistry()
    controller = CanaryController(
        leader,
        stats,
        GatewayMetrics(registry),
        build_tracer_provider("test").get_tracer("t"),
        clock=lambda: clock[0],
    )
    look(controller)  # starts watching the step
    for arm in ("stable", "canary"):
        stats.observe("titanic", arm, failed=False, seconds=0.01)
    clock[0] = 2.0
    ended = policy("3")  # the operator ends the canary: version 3 answers everything
    other.replace("titanic", ended)  # a PUT on the other gateway, not read by the leader yet

    with caplog.at_level(logging.INFO, logger="driftgate.gateway.canary"):
        verdicts = look(controller)

    assert verdicts["titanic"].action == "advance"  # judged on what it measured ...
    on_disk = parse_route("titanic", yaml.safe_load((tmp_path / "titanic.yaml").read_text()))
    assert on_disk == ended  # ... but not applied over the newer policy
    advanced = {"route": "titanic", "action": "advance"}
    assert registry.get_sample_value("driftgate_canary_decisions_total", advanced) == 0
    assert any("changed since" in record.getMessage() for record in caplog.records)
    assert reload(leader) == [("titanic", "applied")]
    assert leader.get("titanic") == ended
    assert look(controller) == {}  # no canary left to judge


def test_the_decider_checks_the_route_file_only_once_no_other_gateway_is_writing(
    tmp_path: Path,
) -> None:
    """Checking, then writing, without the other gateways' lock would leave a window in
    which a PUT renamed in between is overwritten all the same."""
    configured = {"titanic": parse_route("titanic", CANARY_ROUTE)}
    leader = RouteTable(configured, tmp_path)
    measured = leader.get("titanic")
    decided = parse_route("titanic", {**CANARY_ROUTE, "canary": {**CANARY, "step": 1}})
    with ThreadPoolExecutor(1) as pool, (tmp_path / WRITE_LOCK_NAME).open("w") as writer:
        fcntl.flock(writer, fcntl.LOCK_EX)  # another gateway is writing the route
        deciding = pool.submit(leader.replace_if_unchanged, "titanic", measured, decided)
        time.sleep(0.2)
        assert not deciding.done()  # it waits for the other write
        (tmp_path / "titanic.yaml").write_text(yaml.safe_dump({"primary": {"model": "x"}}))
        fcntl.flock(writer, fcntl.LOCK_UN)  # the other write is done
        assert deciding.result(timeout=5) is False
    assert yaml.safe_load((tmp_path / "titanic.yaml").read_text()) == {"primary": {"model": "x"}}


def test_a_write_read_back_while_the_decider_waits_for_the_lock_is_not_overwritten(
    tmp_path: Path,
) -> None:
    """The decision's write runs in a worker thread: the event loop may read another
    gateway's write back while the decider waits for the lock, and then the file is the
    one the table knows, but no longer the policy the decision was measured on."""
    configured = {"titanic": parse_route("titanic", CANARY_ROUTE)}
    leader, other = RouteTable(configured, tmp_path), RouteTable(configured, tmp_path)
    measured = leader.get("titanic")
    decided = parse_route("titanic", {**CANARY_ROUTE, "canary": {**CANARY, "step": 1}})
    ended = policy("3")
    with ThreadPoolExecutor(1) as pool, (tmp_path / WRITE_LOCK_NAME).open("w") as writer:
        fcntl.flock(writer, fcntl.LOCK_EX)  # another gateway is writing the route
        deciding = pool.submit(leader.replace_if_unchanged, "titanic", measured, decided)
        time.sleep(0.2)
        other._swap("titanic", ended, other._persist("titanic", ended))  # its write, locked
        assert reload(leader) == [("titanic", "applied")]  # read back meanwhile
        fcntl.flock(writer, fcntl.LOCK_UN)
        assert deciding.result(timeout=5) is False
    assert parse_route("titanic", yaml.safe_load((tmp_path / "titanic.yaml").read_text())) == ended
    assert leader.get("titanic") == ended


def test_a_decision_on_a_route_nobody_changed_is_applied_and_read_back_as_its_own(
    tmp_path: Path,
) -> None:
    configured = {"titanic": parse_route("titanic", CANARY_ROUTE)}
    leader, other = RouteTable(configured, tmp_path), RouteTable(configured, tmp_path)
    stats, clock = CanaryStats(), [0.0]
    controller = controller_of(leader, stats, SharedWindows(None), clock)
    look(controller)
    for arm in ("stable", "canary"):
        stats.observe("titanic", arm, failed=False, seconds=0.01)
    clock[0] = 2.0

    assert look(controller)["titanic"].action == "advance"

    assert reload(leader) == []  # its own write
    assert reload(other) == [("titanic", "applied")]
    advanced = other.get("titanic").canary
    assert advanced is not None and advanced.step == 1


def _advancing_controller(
    tmp_path: Path,
) -> tuple[RouteTable, CanaryStats, list[float], CanaryController, CollectorRegistry]:
    """A lease holder whose canary advances at its second look (``clock`` set to 2)."""
    table = RouteTable({"titanic": parse_route("titanic", CANARY_ROUTE)}, tmp_path)
    stats, clock, registry = CanaryStats(), [0.0], CollectorRegistry()
    controller = CanaryController(
        table,
        stats,
        GatewayMetrics(registry),
        build_tracer_provider("test").get_tracer("t"),
        clock=lambda: clock[0],
        tick_s=0.02,
        shared=SharedWindows(tmp_path, "gateway-0"),
    )
    return table, stats, clock, controller, registry


def _step_on_disk(tmp_path: Path) -> int | None:
    path = tmp_path / "titanic.yaml"
    return yaml.safe_load(path.read_text())["canary"]["step"] if path.exists() else None


def test_a_decision_waiting_for_another_gateways_write_leaves_the_event_loop_serving(
    tmp_path: Path,
) -> None:
    """The decision's write waits for ``.routes.lock`` (another gateway writing) and then
    fsyncs: on the event loop, it held up every request the gateway was answering."""
    table, stats, clock, controller, _ = _advancing_controller(tmp_path)
    beats: list[float] = []

    async def heartbeat() -> None:  # stands for the requests the gateway answers
        while True:
            beats.append(time.monotonic())
            await asyncio.sleep(0.01)

    async def decide_while_another_gateway_writes(writer: int) -> None:
        running = asyncio.create_task(controller.run())
        await asyncio.sleep(0.1)  # it watches the step now
        for arm in ("stable", "canary"):
            stats.observe("titanic", arm, failed=False, seconds=0.01)
        beating = asyncio.create_task(heartbeat())
        clock[0] = 2.0  # the next look advances the canary, and waits for the lock
        # Released from another thread: a loop the decision blocks could not do it.
        threading.Timer(0.6, fcntl.flock, (writer, fcntl.LOCK_UN)).start()
        for _ in range(500):
            if _step_on_disk(tmp_path) == 1:
                break
            await asyncio.sleep(0.01)
        beating.cancel()
        running.cancel()
        await asyncio.gather(beating, running, return_exceptions=True)

    with (tmp_path / WRITE_LOCK_NAME).open("w") as writer:
        fcntl.flock(writer, fcntl.LOCK_EX)  # another gateway is writing into routes_dir
        asyncio.run(decide_while_another_gateway_writes(writer.fileno()))

    assert _step_on_disk(tmp_path) == 1  # the decision was written once the lock was free
    canary = table.get("titanic").canary
    assert canary is not None and canary.step == 1
    assert len(beats) > 20
    assert max(b - a for a, b in itertools.pairwise(beats)) < 0.3  # the loop never stalled


def test_a_gateway_stopped_while_its_decision_waits_for_the_lock_stops_after_the_write(
    tmp_path: Path,
) -> None:
    """A worker thread cannot be stopped: the controller waits for its write, and counts
    it, before it withdraws its windows; it writes nothing once stopped."""
    table, stats, clock, controller, registry = _advancing_controller(tmp_path)

    async def stop_while_deciding(writer: int) -> None:
        running = asyncio.create_task(controller.run())
        await asyncio.sleep(0.1)
        for arm in ("stable", "canary"):
            stats.observe("titanic", arm, failed=False, seconds=0.01)
        clock[0] = 2.0
        threading.Timer(0.5, fcntl.flock, (writer, fcntl.LOCK_UN)).start()
        await asyncio.sleep(0.2)  # the decision waits for the lock now
        assert _step_on_disk(tmp_path) is None
        running.cancel()
        with pytest.raises(asyncio.CancelledError):
            await running

    with (tmp_path / WRITE_LOCK_NAME).open("w") as writer:
        fcntl.flock(writer, fcntl.LOCK_EX)
        asyncio.run(stop_while_deciding(writer.fileno()))

    assert _step_on_disk(tmp_path) == 1  # written before run() returned
    canary = table.get("titanic").canary
    assert canary is not None and canary.step == 1
    advanced = {"route": "titanic", "action": "advance"}
    assert registry.get_sample_value("driftgate_canary_decisions_total", advanced) == 1
    assert list((tmp_path / ".canary").glob("*.json")) == []  # withdrawn after the write
    written = (tmp_path / "titanic.yaml").stat()
    time.sleep(0.1)
    assert (tmp_path / "titanic.yaml").stat() == written  # nothing written once stopped


# --- measurements shared with the decider ------------------------------------------------


def look(controller: CanaryController, **options: Any) -> dict[str, Verdict]:
    """One look at the canaries (``tick``), from outside an event loop."""
    return asyncio.run(controller.tick(**options))


def controller_of(
    table: RouteTable, stats: CanaryStats, shared: SharedWindows, clock: list[float]
) -> CanaryController:
    return CanaryController(
        table,
        stats,
        GatewayMetrics(CollectorRegistry()),
        build_tracer_provider("test").get_tracer("t"),
        clock=lambda: clock[0],
        shared=shared,
    )


def test_the_decider_judges_the_traffic_every_gateway_answered(tmp_path: Path) -> None:
    route = {**CANARY_ROUTE, "canary": {**CANARY, "min_requests": 4}}
    configured = {"titanic": parse_route("titanic", route)}
    clock = [0.0]
    stats = {name: CanaryStats() for name in ("leader", "other")}
    shared = {name: SharedWindows(tmp_path, name) for name in stats}
    controllers = {
        name: controller_of(RouteTable(configured, tmp_path), stats[name], shared[name], clock)
        for name in stats
    }
    for controller in controllers.values():
        look(controller)  # both start watching the step
    for gateway_stats in stats.values():  # each gateway answers half of the canary's traffic
        for arm in ("stable", "canary"):
            for _ in range(2):
                gateway_stats.observe("titanic", arm, failed=False, seconds=0.01)
    clock[0] = 2.0

    alone = look(controllers["leader"], decides=False)
    shared["other"].publish(controllers["other"].measured())
    together = look(controllers["leader"], decides=False, others=shared["leader"].gather())

    assert alone["titanic"].reason == "waiting for traffic: 2 of 4 requests"
    assert together["titanic"].action == "advance"


def test_measurements_that_are_stale_unreadable_or_of_another_step_do_not_count(
    tmp_path: Path,
) -> None:
    now = [1000.0]
    reader = SharedWindows(tmp_path, "reader", clock=lambda: now[0])
    window = ArmWindow(requests=3, failures=1)
    window.latencies.extend([0.01, 0.02, 0.03])
    SharedWindows(tmp_path, "fresh", clock=lambda: 995.0).publish(
        {"titanic": ("step-1", {"canary": window})}
    )
    SharedWindows(tmp_path, "stopped", clock=lambda: 900.0).publish(
        {"titanic": ("step-1", {"canary": window})}
    )
    SharedWindows(tmp_path, "gone", clock=lambda: 0.0).publish(
        {"titanic": ("step-1", {"canary": window})}
    )
    (tmp_path / ".canary" / "broken.json").write_text("{not json")

    gathered = reader.gather()

    assert set(gathered) == {("titanic", "step-1")}
    total = gathered["titanic", "step-1"]["canary"]
    assert (total.requests, total.failures, list(total.latencies)) == (3, 1, [0.01, 0.02, 0.03])
    assert not (tmp_path / ".canary" / "gone.json").exists()  # older than FORGET_S
    assert (tmp_path / ".canary" / "stopped.json").exists()
    SharedWindows(tmp_path, "fresh").withdraw()
    assert reader.gather() == {}


def test_measurements_dated_ahead_of_the_readers_clock_go_stale_when_no_longer_rewritten(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A gateway whose clock ran 100 s ahead had its file counted as fresh for 100 s (plus
    ``STALE_S``) after it stopped: its age was negative. Now the file counts while its
    gateway rewrites it, and is stale ``STALE_S`` after this gateway first read its date."""
    now = [1000.0]
    reader = SharedWindows(tmp_path, "reader", clock=lambda: now[0])
    ahead = SharedWindows(tmp_path, "ahead", clock=lambda: now[0] + 100)
    path = tmp_path / ".canary" / "ahead.json"

    def publish(requests: int) -> None:
        ahead.publish({"titanic": ("step-1", {"canary": ArmWindow(requests=requests)})})

    def counted() -> int:
        gathered = reader.gather()
        return gathered["titanic", "step-1"]["canary"].requests if gathered else 0

    publish(3)
    assert counted() == 3  # its gateway runs: its measurements count
    now[0] += 20
    publish(4)  # rewritten: fresh again
    assert counted() == 4
    now[0] += STALE_S + 1  # its gateway stopped: not rewritten for more than STALE_S
    assert counted() == 0
    now[0] += FORGET_S
    assert counted() == 0
    assert not path.exists()
    assert "ahead.json are dated 100 s ahead of this gateway's clock" in caplog.text
    assert caplog.text.count("ahead of this gateway's clock") == 1  # once per file


def test_a_publish_still_running_when_the_gateway_stops_does_not_bring_its_file_back(
    tmp_path: Path,
) -> None:
    """The controller's task is cancelled at shutdown, not the thread of a publish it was
    awaiting: that publish wrote the file again after ``withdraw`` removed it, and the
    stopped gateway's measurements counted for another 30 seconds."""
    shared = SharedWindows(tmp_path, "stopping")
    shared.publish({"titanic": ("step-0", {"canary": ArmWindow(requests=1)})})
    shared.withdraw()

    shared.publish({"titanic": ("step-0", {"canary": ArmWindow(requests=2)})})  # too late

    assert list((tmp_path / ".canary").glob("*.json")) == []


def test_two_running_controllers_one_lease_the_traffic_of_both_advances_the_canary(
    tmp_path: Path,
) -> None:
    route = {**CANARY_ROUTE, "canary": {**CANARY, "min_requests": 4}}
    configured = {"titanic": parse_route("titanic", route)}
    registries = [CollectorRegistry(), CollectorRegistry()]
    tables = [RouteTable(configured, tmp_path) for _ in registries]
    stats = [CanaryStats() for _ in registries]
    controllers = [
        CanaryController(
            table,
            gateway_stats,
            GatewayMetrics(registry),
            build_tracer_provider("test").get_tracer("t"),
            tick_s=0.05,
            lease=FileLease(tmp_path),
            shared=SharedWindows(tmp_path, f"gateway-{index}"),
        )
        for index, (table, gateway_stats, registry) in enumerate(
            zip(tables, stats, registries, strict=True)
        )
    ]

    async def serve_for_a_while() -> None:
        tasks = [asyncio.create_task(controller.run()) for controller in controllers]
        await asyncio.sleep(0.2)  # both watch the step now
        for gateway_stats in stats:  # 2 of the 4 requests each
            for arm in ("stable", "canary"):
                for _ in range(2):
                    gateway_stats.observe("titanic", arm, failed=False, seconds=0.01)
        await asyncio.sleep(1.5)  # past the step's interval_s of 1 s
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    asyncio.run(serve_for_a_while())

    leaders = [r.get_sample_value("driftgate_canary_leader") for r in registries]
    assert sorted(leader or 0.0 for leader in leaders) == [0.0, 1.0]
    assert None not in leaders
    saved = yaml.safe_load((tmp_path / "titanic.yaml").read_text())
    assert saved["canary"]["step"] == 1  # advanced by the leader, on both gateways' traffic
    assert list((tmp_path / ".canary").glob("*.json")) == []  # withdrawn when they stopped


# --- conditional writes (an admin PUT with If-Match) -------------------------------------------


def test_a_conditional_write_checks_the_route_once_no_other_gateway_is_writing(
    tmp_path: Path,
) -> None:
    """Checking the ETag, then writing, without the other gateways' lock would leave a
    window in which a PUT renamed in between is overwritten all the same."""
    table = RouteTable(CONFIGURED, tmp_path)
    read = policy_etag(table.get("titanic"))
    with ThreadPoolExecutor(1) as pool, (tmp_path / WRITE_LOCK_NAME).open("w") as writer:
        fcntl.flock(writer, fcntl.LOCK_EX)  # another gateway is writing the route
        putting = pool.submit(table.replace, "titanic", policy("2"), frozenset({read}))
        time.sleep(0.2)
        assert not putting.done()  # it waits for the other write
        (tmp_path / "titanic.yaml").write_text(yaml.safe_dump({"primary": {"model": "x"}}))
        fcntl.flock(writer, fcntl.LOCK_UN)  # the other write is done
        with pytest.raises(RouteChanged) as changed:
            putting.result(timeout=5)
    assert changed.value.etag == policy_etag(parse_route("titanic", {"primary": {"model": "x"}}))
    assert yaml.safe_load((tmp_path / "titanic.yaml").read_text()) == {"primary": {"model": "x"}}
    assert table.get("titanic") == policy("1")  # nothing swapped in either


def test_a_removed_route_file_is_checked_as_the_policy_it_goes_back_to(tmp_path: Path) -> None:
    here, there = RouteTable(CONFIGURED, tmp_path), RouteTable(CONFIGURED, tmp_path)
    there.replace("titanic", policy("2"))
    reload(here)
    read = policy_etag(here.get("titanic"))  # version 2, from the file

    (tmp_path / "titanic.yaml").unlink()  # an operator goes back to gateway.yaml's

    with pytest.raises(RouteChanged) as changed:
        here.replace("titanic", policy("3"), frozenset({read}))
    assert changed.value.etag == policy_etag(policy("1"))
    assert here.replace("titanic", policy("3"), frozenset({changed.value.etag}))


def test_a_create_checks_that_the_route_is_unconfigured_once_no_other_gateway_is_writing(
    tmp_path: Path,
) -> None:
    """``If-None-Match: *`` is checked under the lock like ``If-Match``: a route another
    gateway configures meanwhile with exactly the default policy (the ETag it had while
    unconfigured) is refused, not overwritten."""
    table = RouteTable({}, tmp_path)
    default = table.get("titanic")
    with ThreadPoolExecutor(1) as pool, (tmp_path / WRITE_LOCK_NAME).open("w") as writer:
        fcntl.flock(writer, fcntl.LOCK_EX)  # another gateway is writing the route
        putting = pool.submit(table.replace, "titanic", policy("2"), None, "*")
        time.sleep(0.2)
        assert not putting.done()  # it waits for the other write
        (tmp_path / "titanic.yaml").write_text(yaml.safe_dump(route_to_dict(default)))
        fcntl.flock(writer, fcntl.LOCK_UN)
        with pytest.raises(RouteMatched) as matched:
            putting.result(timeout=5)
    assert (matched.value.star, matched.value.etag) == (True, policy_etag(default))
    assert (
        parse_route("titanic", yaml.safe_load((tmp_path / "titanic.yaml").read_text())) == default
    )
    assert not table.is_configured("titanic")


def test_listed_etags_refuse_a_write_while_the_route_has_one_compared_weakly(
    tmp_path: Path,
) -> None:
    table = RouteTable(CONFIGURED, tmp_path)
    etag = policy_etag(policy("1"))

    with pytest.raises(RouteMatched) as matched:
        table.replace("titanic", policy("2"), None, frozenset({'"other"', f"W/{etag}"}))
    assert (matched.value.star, matched.value.etag) == (False, etag)
    with pytest.raises(RouteChanged) as changed:  # If-Match first: both must hold
        table.replace("titanic", policy("2"), frozenset({'"stale"'}), frozenset({'"other"'}))
    assert not isinstance(changed.value, RouteMatched)
    assert table.replace("titanic", policy("2"), frozenset({etag}), frozenset({'"other"'}))
    assert table.get("titanic") == policy("2")


def test_the_etag_of_a_policy_is_the_same_in_every_process(tmp_path: Path) -> None:
    code = (
        "from gateway.policy import parse_route; from gateway.route_conditions import policy_etag; "
        "print(policy_etag(parse_route('titanic', "
        "{'primary': {'model': 'titanic', 'version': '2'}})))"
    )
    other = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert other.stdout.strip() == policy_etag(policy("2"))

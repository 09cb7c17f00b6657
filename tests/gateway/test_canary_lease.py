"""The canary lease changes hands when its holder cannot do the job (docs/gateway.md,
"Several gateways").

A decider whose looks kept failing (its measurements file, or a decision's route file,
could not be written) held the lease for as long as the fault lasted, logging an ERROR
every 5 seconds, and no other gateway could take over: canaries stood still. It now
gives the lease up after ``MAX_FAILED_LOOKS`` failed looks in a row, says so once, and
tries to take it back later like any gateway; whoever decides next goes on from the step
saved in the route's file. The faults here are real files: the path of a gateway's
measurements file taken by a directory.

A gateway stopped while a look was taking the lease in its worker thread kept the lock
for as long as its process lived: ``release`` ran before the thread had taken it.
"""

from __future__ import annotations

import asyncio
import fcntl
import logging
import threading
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import yaml
from prometheus_client import CollectorRegistry

from gateway import lease as lease_module
from gateway.canary import LOOKS_WITHOUT_LEASE, MAX_FAILED_LOOKS, CanaryController, CanaryStats
from gateway.canary_share import FOLDER_NAME, SharedWindows, policy_digest
from gateway.lease import FileLease
from gateway.policy import parse_route
from gateway.route_table import RouteTable
from monitoring.gateway_metrics import GatewayMetrics
from monitoring.tracing import build_tracer_provider
from tests.gateway.test_canary_faults import CANARY_ROUTE, stop

GAVE_UP = "gave up the canary lease"


class Member:
    """One gateway sharing ``routes_dir``: its own routes, windows, lease and clock."""

    def __init__(self, routes_dir: Path, name: str) -> None:
        self.name = name
        self.table = RouteTable({"titanic": parse_route("titanic", CANARY_ROUTE)}, routes_dir)
        self.stats = CanaryStats()
        self.clock = [0.0]
        self.registry = CollectorRegistry()
        self.measurements = routes_dir / FOLDER_NAME / f"{name}.json"
        self.controller = CanaryController(
            self.table,
            self.stats,
            GatewayMetrics(self.registry),
            build_tracer_provider("test").get_tracer("t"),
            clock=lambda: self.clock[0],
            tick_s=0.02,
            lease=FileLease(routes_dir),
            shared=SharedWindows(routes_dir, name),
        )

    def leader(self) -> float | None:
        return self.registry.get_sample_value("driftgate_canary_leader")

    def step(self) -> int | None:
        canary = self.table.get("titanic").canary
        return None if canary is None else canary.step

    def read_folder(self) -> None:
        """What the route watcher does every 2 seconds."""
        self.table.apply(self.table.scan())

    def break_measurements(self) -> None:
        """Its measurements file cannot be written: a directory has taken its path."""
        while True:
            self.measurements.unlink(missing_ok=True)
            try:
                self.measurements.mkdir(parents=True)
                return
            except FileExistsError:  # its running loop published again in between
                continue

    def mend_measurements(self) -> None:
        self.measurements.rmdir()

    def watches_current_step(self) -> bool:
        """Whether the controller has seen the route's policy as the table has it now (its
        first look at a step starts the step's window afresh)."""
        measured = self.controller.measured().get("titanic")
        return measured is not None and measured[0] == policy_digest(self.table.get("titanic"))

    async def advance(self) -> bool:
        """Let the current step pass on this gateway's traffic; whether its step moved on."""
        before = self.step()
        if not await until(self.watches_current_step):
            return False
        self.stats.observe("titanic", "canary", failed=False, seconds=0.01)
        self.clock[0] += 2.0
        return await until(lambda: self.step() != before)


async def until(condition: Callable[[], object], seconds: float = 5.0) -> bool:
    for _ in range(int(seconds / 0.01)):
        if condition():
            return True
        await asyncio.sleep(0.01)
    return bool(condition())


def saved(routes_dir: Path) -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((routes_dir / "titanic.yaml").read_text())
    return loaded


def gave_up(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.getMessage().startswith(GAVE_UP)]


def test_a_decider_whose_writes_keep_failing_hands_its_canary_over_at_the_saved_step(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    first, second = Member(tmp_path, "gateway-a"), Member(tmp_path, "gateway-b")

    async def scenario() -> dict[str, object]:
        run_first = asyncio.create_task(first.controller.run())
        assert await until(lambda: first.leader() == 1.0)
        run_second = asyncio.create_task(second.controller.run())
        assert await until(lambda: second.leader() == 0.0)  # measuring, not deciding
        assert await first.advance()
        second.read_folder()  # the decision reaches the other gateway
        assert second.step() == 1

        first.break_measurements()
        handed_over = await until(lambda: second.leader() == 1.0)
        promoted = handed_over and await second.advance()
        outcome: dict[str, object] = {
            "handed over": handed_over,
            "promoted": promoted,
            "first leads": first.leader(),
            "second leads": second.leader(),
            "first gave up": first.registry.get_sample_value(
                "driftgate_canary_lease_given_up_total"
            ),
        }
        await stop(run_first)
        await stop(run_second)
        return outcome

    with caplog.at_level(logging.INFO, "driftgate.gateway.canary"):
        outcome = asyncio.run(scenario())

    assert outcome == {
        "handed over": True,
        "promoted": True,  # from step 1, as saved: the canary did not start over
        "first leads": 0.0,
        "second leads": 1.0,
        "first gave up": 1.0,
    }
    policy = saved(tmp_path)
    assert "canary" not in policy and policy["primary"] == {"model": "titanic", "version": "2"}
    [message] = gave_up(caplog)  # said once, however many looks failed
    assert f"after {MAX_FAILED_LOOKS} failed looks in a row" in message
    assert "Is a directory" in message and "gateway-a.json" in message
    assert f"tries to take it back in {(LOOKS_WITHOUT_LEASE + 1) * 0.02:g} s" in message


def test_a_gateway_that_gave_the_lease_up_takes_it_back_once_nobody_else_has(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    alone = Member(tmp_path, "gateway-a")
    alone.break_measurements()

    async def scenario() -> tuple[bool, bool, float | None]:
        task = asyncio.create_task(alone.controller.run())
        released = await until(lambda: gave_up(caplog))
        alone.mend_measurements()
        back = await until(lambda: alone.leader() == 1.0)
        advanced = await alone.advance()
        leader = alone.leader()
        await stop(task)
        return released, back and advanced, leader

    with caplog.at_level(logging.ERROR, "driftgate.gateway.canary"):
        released, decides_again, leader = asyncio.run(scenario())

    assert released, "the lease was kept through every failed look"
    assert decides_again and leader == 1.0
    assert saved(tmp_path)["canary"]["step"] == 1


def test_looks_that_fail_without_the_lease_give_nothing_up(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    holder = FileLease(tmp_path)
    assert holder.held()  # another gateway decides
    member = Member(tmp_path, "gateway-a")
    member.break_measurements()

    async def scenario() -> None:
        task = asyncio.create_task(member.controller.run())
        await until(lambda: len(caplog.records) > MAX_FAILED_LOOKS + 1, seconds=2)
        await stop(task)

    with caplog.at_level(logging.ERROR, "driftgate.gateway.canary"):
        asyncio.run(scenario())

    assert len(caplog.records) > MAX_FAILED_LOOKS + 1  # "canary analysis: ..." each look
    assert gave_up(caplog) == []
    assert member.leader() == 0.0
    holder.release()


# --- a stop while the lease is being taken ---------------------------------------------------


def test_a_gateway_stopped_while_a_look_takes_the_lease_leaves_it_free(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    taking, stopped = threading.Event(), threading.Event()

    def flock_after_the_stop(fd: int, operation: int) -> None:
        """The look's worker thread reaches the lock, and takes it once the gateway stopped."""
        if not taking.is_set():
            taking.set()
            assert stopped.wait(10)
        fcntl.flock(fd, operation)

    seam = SimpleNamespace(flock=flock_after_the_stop, LOCK_EX=fcntl.LOCK_EX, LOCK_NB=fcntl.LOCK_NB)
    monkeypatch.setattr(lease_module, "fcntl", seam)
    member = Member(tmp_path, "gateway-a")

    async def scenario() -> None:
        task = asyncio.create_task(member.controller.run())
        assert await asyncio.to_thread(taking.wait, 10)
        await stop(task)  # the app's shutdown: the loop's ``finally`` has run
        stopped.set()
        # asyncio.run returns once the worker thread is done with the lease.

    asyncio.run(scenario())

    other = FileLease(tmp_path)
    assert other.held(), "the stopped gateway's process kept the lock"
    other.release()


def test_a_closed_lease_is_not_taken_again(tmp_path: Path) -> None:
    lease = FileLease(tmp_path)
    assert lease.held()

    lease.close()

    assert not lease.held()
    assert not lease.holding
    other = FileLease(tmp_path)
    assert other.held()
    other.release()

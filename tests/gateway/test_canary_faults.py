"""The canary loop outlives a failing shared folder (docs/gateway.md, "Several gateways").

Every look writes this gateway's measurements into ``<routes_dir>/.canary/``, and a
decision writes the route's file: on a full disk or a network file system that hiccups,
either raises ``OSError``. One such error used to end the loop for good, silently: the
gateway never judged a canary again until restarted, gave the lease up while
``driftgate_canary_leader`` stayed 1 (two gateways showed 1 once another took over), and
when every gateway sharing the full volume hit it, canaries stopped everywhere. The loop
now logs the error and looks again at its next turn.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client import CollectorRegistry

from gateway import route_files
from gateway.canary import CanaryController, CanaryStats
from gateway.canary_share import SharedWindows
from gateway.lease import FileLease
from gateway.policy import parse_route
from gateway.route_table import RouteTable
from monitoring.gateway_metrics import GatewayMetrics
from monitoring.tracing import build_tracer_provider

CANARY_ROUTE = {
    "primary": {"model": "titanic", "version": "1"},
    "canary": {
        "target": {"model": "titanic", "version": "2"},
        "steps": [50, 100],
        "interval_s": 1,
        "min_requests": 1,
    },
}
DISK_FULL = OSError(28, "No space left on device")


class Decider:
    """A lease holder on ``routes_dir`` whose canary advances once its clock says 2."""

    def __init__(self, routes_dir: Path) -> None:
        self.table = RouteTable({"titanic": parse_route("titanic", CANARY_ROUTE)}, routes_dir)
        self.stats = CanaryStats()
        self.clock = [0.0]
        self.registry = CollectorRegistry()
        self.shared = SharedWindows(routes_dir, "gateway-0")
        self.controller = CanaryController(
            self.table,
            self.stats,
            GatewayMetrics(self.registry),
            build_tracer_provider("test").get_tracer("t"),
            clock=lambda: self.clock[0],
            tick_s=0.02,
            lease=FileLease(routes_dir),
            shared=self.shared,
        )

    def step(self) -> int:
        canary = self.table.get("titanic").canary
        assert canary is not None
        return canary.step

    def leader(self) -> float | None:
        return self.registry.get_sample_value("driftgate_canary_leader")


async def run_until(decider: Decider, done: Any, seconds: float = 3.0) -> asyncio.Task[None]:
    """Runs the loop until ``done()`` (or ``seconds``); returns its task, still running."""
    task = asyncio.create_task(decider.controller.run())
    for _ in range(int(seconds / 0.01)):
        if task.done() or done():
            break
        await asyncio.sleep(0.01)
    return task


async def stop(task: asyncio.Task[None]) -> None:
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)


def failing_once(monkeypatch: pytest.MonkeyPatch, owner: Any, name: str) -> list[int]:
    """Make ``owner.name`` raise DISK_FULL on its first call; returns the calls made."""
    real = getattr(owner, name)
    calls: list[int] = []

    def flaky(*args: Any, **kwargs: Any) -> Any:
        calls.append(1)
        if len(calls) == 1:
            raise DISK_FULL
        return real(*args, **kwargs)

    monkeypatch.setattr(owner, name, flaky)
    return calls


def test_a_failed_publish_is_logged_and_the_next_looks_go_on(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    decider = Decider(tmp_path)
    published = failing_once(monkeypatch, decider.shared, "publish")

    async def scenario() -> tuple[bool, int]:
        task = await run_until(decider, lambda: len(published) >= 3)  # it watches the step
        decider.stats.observe("titanic", "canary", failed=False, seconds=0.01)
        decider.clock[0] = 2.0
        for _ in range(300):
            if decider.step() == 1 or task.done():
                break
            await asyncio.sleep(0.01)
        alive = not task.done()
        await stop(task)
        return alive, decider.step()

    with caplog.at_level(logging.ERROR, "driftgate.gateway.canary"):
        alive, step = asyncio.run(scenario())

    assert alive, "the loop ended at the first failed publish"
    assert step == 1  # still deciding
    assert "No space left on device" in caplog.text
    assert (tmp_path / ".canary").is_dir()


def test_a_decision_whose_write_fails_is_made_again_at_the_next_look(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    decider = Decider(tmp_path)
    writes = failing_once(monkeypatch, route_files, "write_route_file")
    monkeypatch.setattr("gateway.route_table.write_route_file", route_files.write_route_file)

    async def scenario() -> tuple[bool, float | None]:
        task = await run_until(decider, lambda: False, seconds=0.1)  # it watches the step
        decider.stats.observe("titanic", "canary", failed=False, seconds=0.01)
        decider.clock[0] = 2.0
        for _ in range(300):
            if decider.step() == 1 or task.done():
                break
            await asyncio.sleep(0.01)
        alive, leader = not task.done(), decider.leader()
        await stop(task)
        return alive, leader

    with caplog.at_level(logging.ERROR, "driftgate.gateway.canary"):
        alive, leader = asyncio.run(scenario())

    assert alive and leader == 1.0
    assert len(writes) == 2 and decider.step() == 1
    assert yaml.safe_load((tmp_path / "titanic.yaml").read_text())["canary"]["step"] == 1
    assert "No space left on device" in caplog.text


def test_a_withdraw_that_fails_at_stop_is_logged_and_the_loop_stops_as_cancelled(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    decider = Decider(tmp_path)
    monkeypatch.setattr(decider.shared, "withdraw", lambda: (_ for _ in ()).throw(DISK_FULL))

    async def scenario() -> asyncio.Task[None]:
        task = await run_until(decider, lambda: False, seconds=0.1)
        await stop(task)
        return task

    with caplog.at_level(logging.ERROR, "driftgate.gateway.canary"):
        task = asyncio.run(scenario())

    assert task.cancelled()  # the app's shutdown awaits it as cancelled, not as an error
    assert "No space left on device" in caplog.text
    assert FileLease(tmp_path).held()  # the lease went all the same

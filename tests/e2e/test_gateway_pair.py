"""Two real ``driftgate gateway`` processes sharing one ``routes_dir``, as two gateway pods
on one volume: a route changed through either applies on both, and exactly one of them
makes the canary decisions, handing over when it dies (docs/gateway.md, "Several
gateways").
"""

from __future__ import annotations

import os
import re
import signal
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import TypeVar

import httpx
import pytest
import yaml

from tests.e2e.processes import RunningProcess, driftgate_process, free_port

pytestmark = pytest.mark.e2e

PASSENGER = {"fare": 7, "sex": "male", "embarked": "Q", "pclass": "3", "age": 27}
T = TypeVar("T")


def eventually(check: Callable[[], T | None], timeout_s: float, what: str) -> T:
    deadline = time.monotonic() + timeout_s
    while True:
        found = check()
        if found is not None:
            return found
        assert time.monotonic() < deadline, f"not within {timeout_s:g}s: {what}"
        time.sleep(0.2)


def leader_gauge(gateway: RunningProcess) -> float | None:
    text = httpx.get(gateway.url + "/metrics", timeout=5).text
    match = re.search(r"^driftgate_canary_leader (\S+)$", text, re.MULTILINE)
    return float(match[1]) if match else None


@pytest.fixture
def pair(runtime_server: RunningProcess, tmp_path: Path) -> Iterator[list[RunningProcess]]:
    config = tmp_path / "gateway.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "replicas": [runtime_server.url],
                "auth": {"enabled": False},
                "routes_dir": "routes",
                "routes": {"titanic": {"primary": {"model": "titanic", "version": "1"}}},
            }
        )
    )
    with ExitStack() as stack:
        gateways = []
        for name in ("a", "b"):
            port = free_port()
            args = ["gateway", "--config", str(config), "--port", str(port)]
            log_path = tmp_path / f"gateway-{name}.log"
            gateways.append(stack.enter_context(driftgate_process(args, port, log_path=log_path)))
        yield gateways


def test_a_route_put_on_one_gateway_serves_on_the_other(pair: list[RunningProcess]) -> None:
    first, second = pair
    answered = httpx.post(second.url + "/v1/models/titanic/eval", json=PASSENGER, timeout=10)
    assert answered.headers["x-driftgate-version"] == "1"

    put = httpx.put(
        first.url + "/admin/routes/titanic",
        json={"primary": {"model": "titanic", "version": "2"}},
        timeout=5,
    )
    assert put.status_code == 200, put.text

    def on_second() -> dict[str, object] | None:
        policy: dict[str, object] = httpx.get(
            second.url + "/admin/routes/titanic", timeout=5
        ).json()["policy"]
        return policy if policy["primary"] == {"model": "titanic", "version": "2"} else None

    eventually(on_second, 10, "the second gateway serving the route the first one changed")
    answered = httpx.post(second.url + "/v1/models/titanic/eval", json=PASSENGER, timeout=10)
    assert answered.status_code == 200, answered.text
    assert answered.headers["x-driftgate-version"] == "2"
    metrics = httpx.get(second.url + "/metrics", timeout=5).text
    assert (
        'driftgate_route_updates_total{operation="reload",outcome="applied",route="titanic"} 1.0'
        in metrics
    )


def test_one_gateway_decides_canaries_and_the_other_takes_over_when_it_dies(
    pair: list[RunningProcess],
) -> None:
    def both_reported() -> list[float] | None:
        gauges = [leader_gauge(gateway) for gateway in pair]
        return None if None in gauges else [g for g in gauges if g is not None]

    gauges = eventually(both_reported, 15, "both gateways exporting driftgate_canary_leader")
    assert sorted(gauges) == [0.0, 1.0]
    leader, follower = pair if gauges[0] == 1.0 else reversed(pair)

    os.kill(leader.process.pid, signal.SIGKILL)
    leader.process.wait(timeout=10)

    eventually(
        lambda: True if leader_gauge(follower) == 1.0 else None,
        15,
        "the surviving gateway taking the canary lease",
    )

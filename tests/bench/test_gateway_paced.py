"""bench/gateway_overhead.py's paced cases: the wrk script that paces a connection, and the
report's paced table and verdicts (bench/overhead_report.py)."""

from __future__ import annotations

import re
from typing import Any

import pytest

from tests.bench.test_drift_benches import load

wrk_load = load("wrk_load")
overhead_report = load("overhead_report")
gateway_overhead = load("gateway_overhead")


def test_a_paced_script_waits_a_seeded_exponential_gap_after_each_answer() -> None:
    script = wrk_load.lua_script("POST", "{}", {"Content-Type": "application/json"}, mean_gap_ms=32)
    assert "math.randomseed(1)" in script  # every target gets the same gaps
    delay = re.search(r"delay = function\(\)\n  return (.*)\nend", script)
    assert delay is not None
    assert delay.group(1) == "-math.log(1 - math.random()) * 32.000 + 0.5"
    assert "delay" not in wrk_load.lua_script("POST", "{}", {})  # unpaced: as fast as answered


@pytest.mark.parametrize("gap", [0.0, -1.0, float("nan")])
def test_a_paced_script_refuses_a_gap_that_is_not_positive(gap: float) -> None:
    with pytest.raises(ValueError, match="positive mean gap"):
        wrk_load.lua_script("GET", None, {}, mean_gap_ms=gap)


def _sample(rps: float, p50: float, p99: float) -> Any:
    return wrk_load.Sample(rps=rps, p50_ms=p50, p99_ms=p99, requests=1000, errors=0, cpu_ms=0.5)


def _case(name: str, rounds: list[dict[str, tuple[float, float, float]]]) -> Any:
    keys = list(rounds[0])
    targets = [wrk_load.Target(key, f"http://x/{key}", None, 0) for key in keys]
    case = wrk_load.Case(name, 16, targets)
    case.rounds = [{key: _sample(*values) for key, values in r.items()} for r in rounds]
    return case


def test_the_report_judges_the_latency_targets_on_the_paced_case_as_well() -> None:
    saturated = _case(
        "eval",
        [{"direct": (1000, 15.0, 25.0), "gateway": (900, 17.0 + i, 27.0)} for i in range(5)],
    )
    paced = _case(
        "paced",
        [
            {
                "direct": (480, 1.5, 4.0),
                "gateway": (475, 2.0 + i / 10, 6.0),
                "proxy-floor": (478, 1.8, 5.0),
            }
            for i in range(5)
        ],
    )
    paced.offered_rps = 500.0
    args = gateway_overhead.parse_args(["--rounds", "5"])
    machine = {"cpu": "2 cores", "os": "Linux", "python": "3.11", "wrk": "wrk", "commit": "c"}
    report = overhead_report.render([saturated, paced], args, machine, "0 / 0", 1.0)

    row = next(line for line in report.splitlines() if line.startswith("| 16 | 500 |"))
    assert row.split(" | ")[1:8] == [
        "500",
        "480 / 475",
        "1.50 / 4.00",
        "2.20 / 6.00",
        "+0.70 / +2.00",  # the median round's gateway p50 is 2.2 ms
        "+0.30 / +1.00",  # the floor
        "0.50 / 0.50",
    ]
    assert "50% of what the runtime sustains directly" in report
    # Saturated, the gateway reads 2 ms or more added at p50 in every round: missed.
    assert "- added p50 <= 1 ms at 16 connections: +4.00 (rounds: +2.00, +3.00" in report
    assert "at 16 connections: +4.00" in report and "**missed**" in report
    assert (
        "- added p50 <= 1 ms at 16 connections paced (500 req/s offered): +0.70 "
        "(rounds: +0.50, +0.60, +0.70, +0.80, +0.90): **met**"
    ) in report
    assert "- added p99 <= 5 ms at 16 connections paced (500 req/s offered): +2.00" in report


def test_without_paced_cases_the_report_has_no_paced_table_or_verdicts() -> None:
    saturated = _case("eval", [{"direct": (1000, 15.0, 25.0), "gateway": (900, 16.0, 27.0)}])
    args = gateway_overhead.parse_args(["--paced-connections", ""])
    machine = {"cpu": "2 cores", "os": "Linux", "python": "3.11", "wrk": "wrk", "commit": "c"}
    report = overhead_report.render([saturated], args, machine, "0 / 0", 1.0)
    assert "Paced:" not in report and "connections paced" not in report


@pytest.mark.parametrize("share", ["0", "1.5", "-0.5"])
def test_the_paced_share_is_a_share_of_the_saturated_rate(share: str) -> None:
    with pytest.raises(SystemExit):
        gateway_overhead.parse_args(["--paced-share", share])

"""The Prometheus rules, checked by promtool, unit-tested, and written for on-call.

- ``promtool check rules`` accepts every rules file, ``promtool check config`` the
  shipped prometheus.yml (with its rules), ``amtool check-config`` the Alertmanager config;
- ``promtool test rules`` passes dashboards/prometheus/tests/*.yaml, where every alert has
  a case in which it fires (with its exact labels and rendered annotations) and one in
  which it must stay quiet;
- every alert has a ``for``, a severity of page or ticket, a summary, a description that
  names its labels, and a runbook_url whose anchor is a section of docs/runbook.md; every
  alert section of the runbook belongs to an alert.
"""

from __future__ import annotations

import re
import subprocess
from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest

from tests.dashboards.artifacts import (
    ALERTMANAGER_CONFIG,
    PROMETHEUS_CONFIG,
    RULE_TESTS,
    RUNBOOK,
    alert_rules,
    github_anchor,
    load_yaml,
    rule_files,
    rule_test_files,
    rules,
    runbook_anchors,
)
from tests.dashboards.stack import ALERTMANAGER, require_binary

ALERTS = [rule["alert"] for rule in alert_rules()]


def run(*command: str | Path, cwd: Path | None = None) -> str:
    done = subprocess.run(
        [str(c) for c in command], capture_output=True, text=True, cwd=cwd, timeout=120, check=False
    )
    output = done.stdout + done.stderr
    assert done.returncode == 0, f"{' '.join(map(str, command))} failed:\n{output}"
    return output


def test_the_rules_files_hold_recording_and_alert_rules() -> None:
    assert [path.name for path in rule_files()] == [
        "driftgate-alerts.yaml",
        "driftgate-recording.yaml",
    ]
    names = [rule.get("record") or rule["alert"] for rule in rules()]
    assert len(names) == len(set(names))
    assert len(ALERTS) >= 9


@pytest.mark.prometheus
@pytest.mark.parametrize("path", rule_files(), ids=lambda p: p.name)
def test_promtool_checks_the_rules(path: Path) -> None:
    assert "SUCCESS" in run("promtool", "check", "rules", path)


@pytest.mark.prometheus
def test_promtool_checks_the_prometheus_config_and_its_rules() -> None:
    output = run("promtool", "check", "config", PROMETHEUS_CONFIG)
    assert f"SUCCESS: {len(rule_files())} rule files found" in output


def test_amtool_checks_the_alertmanager_config() -> None:
    amtool = require_binary("amtool", f"apt-get install {ALERTMANAGER}")
    assert "SUCCESS" in run(amtool, "check-config", ALERTMANAGER_CONFIG)


@pytest.mark.prometheus
@pytest.mark.parametrize("path", rule_test_files(), ids=lambda p: p.name)
def test_promtool_unit_tests_pass(path: Path) -> None:
    # Rule files in a unit test are relative to the test file.
    assert "SUCCESS" in run("promtool", "test", "rules", path.name, cwd=RULE_TESTS)


def _alert_cases() -> dict[str, dict[str, list[str]]]:
    """alert -> {"fires": [test names], "quiet": [test names]} over every unit-test file."""
    cases: dict[str, dict[str, list[str]]] = defaultdict(lambda: {"fires": [], "quiet": []})
    for path in rule_test_files():
        for test in load_yaml(path)["tests"]:
            for case in test.get("alert_rule_test", []):
                kind = "fires" if case.get("exp_alerts") else "quiet"
                cases[case["alertname"]][kind].append(test["name"])
    return cases


@pytest.mark.parametrize("alert", ALERTS)
def test_every_alert_has_a_unit_test_where_it_fires_and_one_where_it_does_not(alert: str) -> None:
    cases = _alert_cases()[alert]
    assert cases["fires"], f"no promtool test case where {alert} fires"
    assert cases["quiet"], f"no promtool test case where {alert} stays quiet"


@pytest.mark.parametrize("alert", ALERTS)
def test_every_alert_says_how_urgent_it_is_and_where_its_runbook_is(alert: str) -> None:
    rule: dict[str, Any] = next(r for r in alert_rules() if r["alert"] == alert)
    assert re.fullmatch(r"\d+[smh]", rule.get("for", "")), f"{alert}: no `for:`"
    assert rule["labels"]["severity"] in ("page", "ticket")
    annotations = rule["annotations"]
    assert annotations["summary"].strip()
    assert "$labels." in annotations["description"], f"{alert}: description names no label"
    assert annotations["runbook_url"] == f"docs/runbook.md#{github_anchor(alert)}"
    assert github_anchor(alert) in runbook_anchors(), f"docs/runbook.md has no ## {alert}"


def test_every_alert_section_of_the_runbook_belongs_to_an_alert() -> None:
    sections = re.findall(r"^## (Driftgate\w+)\s*$", RUNBOOK.read_text(), flags=re.MULTILINE)
    assert sorted(sections) == sorted(ALERTS)

"""Every dashboard panel and every rule, against a real Prometheus scraping a real driftgate.

Prometheus (Debian's binary) runs dashboards/prometheus/prometheus.yml with its targets
pointed at the session's ``driftgate up`` (tests/dashboards/traffic.py: the gateway, both
runtime replicas and the jobs process, under traffic that covers every series the panels
read), scraping and evaluating every second, with exemplar storage on and every rules file
loaded.

What it proves:

- every query of every panel of the dashboards returns data (at least one series with a
  finite value), with Grafana's variables filled in as Grafana would: a panel that names a
  metric or label the code does not export fails here instead of staying blank. Only
  drift.json (its metrics come with the drift and explain issues) and panels on other
  pending metrics (artifacts.PENDING_METRICS) may come back empty, and their queries must
  still be accepted by Prometheus;
- every template variable's ``label_values`` query has values;
- every recording rule and alert rule evaluates without error, and every recording rule
  not built on a pending metric records data;
- the alerts this traffic provokes (a fallback in use, a route answering 5xx, a version
  that failed to load, a canary rolled back, a model answering NaN) are pending or
  firing, with their labels and runbook link;
- latency histograms keep trace-id exemplars (OpenMetrics scrape, exemplar storage).
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Callable, Iterator
from datetime import datetime
from typing import Any

import pytest

from tests.dashboards.artifacts import (
    PENDING_DASHBOARDS,
    PROMETHEUS_CONFIG,
    PanelQuery,
    alert_rules,
    dashboard_files,
    load_dashboard,
    load_yaml,
    metric_names,
    panel_queries,
    pending_metrics,
    recording_rules,
    rule_files,
    substitute,
    template_variables,
    variable_query,
)
from tests.dashboards.stack import PrometheusAPI, prometheus, scrape_config
from tests.dashboards.traffic import ObservedSystem

pytestmark = [pytest.mark.e2e, pytest.mark.prometheus]

TRACE_ID = re.compile(r"[0-9a-f]{32}")


def eventually(problems: Callable[[], list[str]], timeout_s: float, what: str) -> None:
    """Poll until ``problems()`` is empty; fail listing the last problems seen."""
    deadline = time.monotonic() + timeout_s
    while True:
        found = problems()
        if not found:
            return
        if time.monotonic() > deadline:
            pytest.fail(f"not within {timeout_s:g}s: {what}:\n" + "\n".join(found))
        time.sleep(1)


def finite(answer: dict[str, Any]) -> list[dict[str, Any]]:
    """The series of an instant-query answer whose value is a number (not NaN or Inf)."""
    return [r for r in answer["data"]["result"] if math.isfinite(float(r["value"][1]))]


@pytest.fixture(scope="module")
def prom(
    observed: ObservedSystem, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[PrometheusAPI]:
    config = scrape_config(load_yaml(PROMETHEUS_CONFIG), observed.targets(), rule_files())
    with prometheus(config, tmp_path_factory.mktemp("prometheus")) as api:
        expected = sum(len(addresses) for addresses in observed.targets().values())

        def targets_down() -> list[str]:
            return [
                f"{t['labels']['job']} {t['scrapeUrl']}: {t['health']} {t['lastError']}"
                for t in api.targets()
                if t["health"] != "up"
            ] or ([] if len(api.targets()) == expected else [f"fewer than {expected} targets"])

        eventually(targets_down, 30, "the gateway, both replicas and the jobs process scraped")
        yield api


def _may_be_empty(query: PanelQuery) -> str | None:
    """Why ``query`` may return no data, or None when it must return data."""
    if query.dashboard in PENDING_DASHBOARDS:
        return PENDING_DASHBOARDS[query.dashboard]
    pending = pending_metrics()
    waiting = sorted(m for m in metric_names(query.expr) if m in pending)
    return ", ".join(f"{m} comes with {pending[m]}" for m in waiting) or None


def test_every_panel_query_returns_data(prom: PrometheusAPI) -> None:
    queries = [q for path in dashboard_files() for q in panel_queries(path)]
    assert len(queries) > 40
    allowed_empty = {q: why for q in queries if (why := _may_be_empty(q))}
    assert {q.dashboard for q in allowed_empty} >= set(PENDING_DASHBOARDS)

    def problems() -> list[str]:
        found = []
        for query in queries:
            expr = substitute(query.expr)
            answer = prom.query(expr)
            if answer["status"] != "success":
                found.append(f"{query}: {answer.get('error')}\n    {expr}")
            elif query not in allowed_empty and not finite(answer):
                found.append(f"{query}: no data\n    {expr}")
        return found

    eventually(problems, 60, "every panel query answering with data")


def test_every_template_variable_has_values(prom: PrometheusAPI) -> None:
    for path in dashboard_files():
        for variable in template_variables(load_dashboard(path)):
            if variable["type"] != "query":
                continue
            query = substitute(variable_query(variable))
            match = re.fullmatch(r"label_values\((.+),\s*(\w+)\)", query)
            assert match, f"{path.name} ${variable['name']}: not a label_values query: {query}"
            answer = prom.get(f"/api/v1/label/{match[2]}/values", {"match[]": match[1]})
            assert answer["status"] == "success", answer
            assert answer["data"], f"{path.name} ${variable['name']}: no values for {query}"


def test_every_rule_evaluates_without_error(prom: PrometheusAPI) -> None:
    expected = {r.get("record") or r["alert"] for r in recording_rules() + alert_rules()}
    started = time.time()

    def problems() -> list[str]:
        loaded = {r["name"]: r for r in prom.rules()}
        found = [f"{name}: not loaded" for name in sorted(expected - set(loaded))]
        for name, rule in sorted(loaded.items()):
            evaluated = _timestamp(rule["lastEvaluation"])
            if rule["health"] != "ok":
                found.append(f"{name}: {rule['health']}: {rule.get('lastError')}")
            elif evaluated < started:
                found.append(f"{name}: not evaluated since the test started")
        return found

    eventually(problems, 30, "every rule loaded and evaluated without error")

    pending = pending_metrics()
    for rule in recording_rules():
        answer = prom.query(rule["record"])
        assert answer["status"] == "success", (rule["record"], answer)
        if not metric_names(rule["expr"]) & pending.keys():
            assert answer["data"]["result"], f"recording rule {rule['record']} recorded nothing"
    for rule in alert_rules():
        answer = prom.query(rule["expr"])
        assert answer["status"] == "success", (rule["alert"], answer)


def _timestamp(rfc3339: str) -> float:
    """Seconds since the epoch of Prometheus' ``lastEvaluation`` (nanosecond RFC 3339)."""
    trimmed = re.sub(r"(\.\d{6})\d*", r"\1", rfc3339).replace("Z", "+00:00")
    return datetime.fromisoformat(trimmed).timestamp()


PROVOKED = [
    {"alertname": "DriftgateFallbackInUse", "route": "titanic_next", "reason": "status_5xx"},
    {"alertname": "DriftgateHighErrorRate", "route": "titanic_broken"},
    {"alertname": "DriftgateModelLoadFailure", "model": "titanic", "version": "7"},
    {"alertname": "DriftgateCanaryRolledBack", "route": "titanic_canary"},
    {
        "alertname": "DriftgateModelNonFiniteOutputs",
        "model": "diabetes",
        "version": "1",
        "output": "progression",
    },
]
QUIET = ["DriftgateTargetDown", "DriftgateReplicaDown"]


def test_the_alerts_the_traffic_provokes_are_pending_or_firing(prom: PrometheusAPI) -> None:
    def missing() -> list[str]:
        active = [a for a in prom.alerts() if a["state"] in ("pending", "firing")]
        return [
            f"no pending or firing alert with labels {wanted}"
            for wanted in PROVOKED
            if not any(wanted.items() <= a["labels"].items() for a in active)
        ]

    eventually(missing, 30, "the provoked alerts pending or firing")
    alerts = prom.alerts()
    for alert in alerts:
        if alert["labels"]["alertname"].startswith("Driftgate"):
            assert alert["labels"]["severity"] in ("page", "ticket"), alert
            assert alert["annotations"]["runbook_url"].startswith("docs/runbook.md#"), alert
            assert "{{" not in alert["annotations"]["description"], alert
    assert [a for a in alerts if a["labels"]["alertname"] in QUIET] == []


@pytest.mark.parametrize(
    "histogram",
    ["driftgate_request_duration_seconds_bucket", "driftgate_inference_duration_seconds_bucket"],
)
def test_latency_histograms_keep_trace_id_exemplars(prom: PrometheusAPI, histogram: str) -> None:
    def exemplars() -> list[dict[str, Any]]:
        return [e for series in prom.exemplars(histogram, 120) for e in series["exemplars"]]

    def none_yet() -> list[str]:
        return [] if exemplars() else [f"no exemplars on {histogram}"]

    eventually(none_yet, 20, f"exemplars on {histogram}")
    found = exemplars()
    assert all(TRACE_ID.fullmatch(e["labels"].get("trace_id", "")) for e in found), found
    assert all(int(e["labels"]["trace_id"], 16) for e in found), found

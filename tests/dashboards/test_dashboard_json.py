"""The Grafana dashboards and provisioning files, checked as files (no Grafana needed).

Each dashboard is importable anywhere: it picks its Prometheus through a ``datasource``
variable (no ``__inputs`` to fill in on import), every panel has a query and an id of its
own, and every variable a query uses is defined. Every metric that a panel, a variable or
a rule names is one docs/metrics.md documents (or one listed as pending, with the work
that will export it), with labels the docs give it, and histogram suffixes only on
histograms; recording-rule series that panels read are defined by the rules. The other
way round, every documented metric is on a panel or in a rule, unless the tests' list of
metrics off the dashboards says where on-call reads it instead.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from tests.dashboards.artifacts import (
    BUILTIN_VARIABLES,
    OFF_DASHBOARD,
    PENDING_DASHBOARDS,
    PENDING_METRICS,
    PROVISIONING,
    TARGET_LABELS,
    TEST_VARIABLES,
    base_name,
    dashboard_files,
    documented_metrics,
    load_dashboard,
    load_yaml,
    metric_names,
    panel_queries,
    panels,
    recorded_names,
    recording_rules,
    rules,
    selector_labels,
    series_names,
    template_variables,
    variable_query,
    variables,
)

DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}
DASHBOARDS = [path.name for path in dashboard_files()]


def path_of(name: str) -> Path:
    return next(path for path in dashboard_files() if path.name == name)


def dashboard(name: str) -> dict[str, Any]:
    return load_dashboard(path_of(name))


def every_expression() -> list[tuple[str, str]]:
    """``(where, PromQL)`` for every panel query, variable query and rule."""
    found = [(str(q), q.expr) for path in dashboard_files() for q in panel_queries(path)]
    for path in dashboard_files():
        for variable in template_variables(load_dashboard(path)):
            if variable["type"] == "query":
                found.append((f"{path.name} ${variable['name']}", variable_query(variable)))
    for rule in rules():
        found.append((f"rule {rule.get('record') or rule['alert']}", rule["expr"]))
    return found


def test_the_dashboards_are_the_overview_a_model_and_drift() -> None:
    assert DASHBOARDS == ["drift.json", "model.json", "overview.json"]
    assert set(PENDING_DASHBOARDS) <= set(DASHBOARDS)
    uids = [dashboard(name)["uid"] for name in DASHBOARDS]
    assert len(set(uids)) == len(uids) and all(uids)


@pytest.mark.parametrize("name", DASHBOARDS)
def test_a_dashboard_imports_anywhere_through_its_datasource_variable(name: str) -> None:
    document = dashboard(name)
    text = json.dumps(document)
    assert "__inputs" not in document and "__requires" not in document
    assert "${DS_" not in text  # what Grafana's "export for sharing" would leave behind
    assert document["schemaVersion"] == 39
    assert "driftgate" in document["tags"]
    first, *_ = template_variables(document)
    assert first["name"] == "datasource"
    assert first["type"] == "datasource"
    assert first["query"] == "prometheus"
    for variable in template_variables(document)[1:]:
        assert variable["type"] == "query", variable["name"]
        assert variable["datasource"] == DATASOURCE, variable["name"]


@pytest.mark.parametrize("name", DASHBOARDS)
def test_every_panel_has_queries_on_the_datasource_variable_and_an_id_of_its_own(
    name: str,
) -> None:
    document = dashboard(name)
    ids = Counter(panel["id"] for panel in panels(document))
    assert [i for i, n in ids.items() if n > 1] == [], f"{name}: panel ids used twice"
    for panel in panels(document):
        grid = panel["gridPos"]
        assert grid["x"] + grid["w"] <= 24, panel["title"]
        if panel["type"] == "row":
            continue
        assert panel["title"] and panel["description"], panel["id"]
        assert panel["datasource"] == DATASOURCE, panel["title"]
        targets = panel.get("targets", [])
        assert targets, f"panel {panel['title']!r} has no query"
        assert len({t["refId"] for t in targets}) == len(targets), panel["title"]
        for target in targets:
            assert target["datasource"] == DATASOURCE, panel["title"]
            assert target["expr"].strip(), f"panel {panel['title']!r} has an empty query"


@pytest.mark.parametrize("name", DASHBOARDS)
def test_every_variable_a_query_uses_is_defined(name: str) -> None:
    document = dashboard(name)
    defined = {v["name"] for v in template_variables(document)}
    used = {v for q in panel_queries(path_of(name)) for v in variables(q.expr)}
    used |= {v for var in template_variables(document) for v in variables(variable_query(var))}
    assert used - defined - set(BUILTIN_VARIABLES) == set(), f"{name}: undefined variables"
    # The e2e test fills in every variable: it must know a value for each.
    assert defined - {"datasource"} <= set(TEST_VARIABLES)


def test_every_metric_named_is_documented_in_metrics_md() -> None:
    documented = documented_metrics()
    assert len(documented) >= 20  # the tables parsed
    unknown = [
        f"{where}: {metric}"
        for where, expr in every_expression()
        for metric in sorted(metric_names(expr))
        if metric not in documented and metric not in PENDING_METRICS
    ]
    assert unknown == [], "metrics not in docs/metrics.md:\n" + "\n".join(unknown)


def test_every_documented_metric_is_on_a_panel_or_in_a_rule() -> None:
    documented = documented_metrics()
    read = {metric for _, expr in every_expression() for metric in metric_names(expr)}
    unread = sorted(set(documented) - read - OFF_DASHBOARD.keys())
    assert unread == [], (
        "documented metrics that no panel or rule reads (add one, or say in "
        f"artifacts.OFF_DASHBOARD where on-call reads them): {unread}"
    )
    stale = sorted(OFF_DASHBOARD.keys() & read) + sorted(OFF_DASHBOARD.keys() - set(documented))
    assert stale == [], f"artifacts.OFF_DASHBOARD lists metrics read or not documented: {stale}"


def test_every_label_matched_is_one_the_metric_has() -> None:
    documented = documented_metrics()
    wrong = []
    for where, expr in every_expression():
        for series, label in sorted(selector_labels(expr)):
            metric = documented.get(base_name(series))
            if metric is None:
                continue  # pending: its labels are not documented yet
            allowed = (
                metric.labels | TARGET_LABELS | ({"le"} if series.endswith("_bucket") else set())
            )
            if label not in allowed:
                wrong.append(f"{where}: {series}{{{label}}} (documented: {sorted(metric.labels)})")
    assert wrong == [], "\n".join(wrong)


def test_bucket_sum_and_count_series_are_read_from_histograms() -> None:
    documented = documented_metrics()
    wrong = [
        f"{where}: {series} ({documented[base_name(series)].type})"
        for where, expr in every_expression()
        for series in sorted(series_names(expr))
        if series != base_name(series)
        and base_name(series) in documented
        and documented[base_name(series)].type != "histogram"
    ]
    assert wrong == [], "\n".join(wrong)


def test_recorded_series_the_panels_read_are_recorded_by_the_rules() -> None:
    recorded = {rule["record"] for rule in recording_rules()}
    missing = [
        f"{where}: {name}"
        for where, expr in every_expression()
        for name in sorted(recorded_names(expr))
        if name not in recorded
    ]
    assert missing == [], "\n".join(missing)


def test_provisioning_points_grafana_at_a_prometheus_and_the_dashboards() -> None:
    sources = load_yaml(PROVISIONING / "datasources.yaml")
    assert sources["apiVersion"] == 1
    (source,) = sources["datasources"]
    assert source["type"] == "prometheus"
    assert source["url"] == "${DRIFTGATE_PROMETHEUS_URL}"  # set in Grafana's environment
    assert source["jsonData"]["exemplarTraceIdDestinations"][0]["name"] == "trace_id"

    dashboards = load_yaml(PROVISIONING / "dashboards.yaml")
    assert dashboards["apiVersion"] == 1
    (provider,) = dashboards["providers"]
    assert provider["type"] == "file"
    assert provider["options"]["path"] == "${DRIFTGATE_DASHBOARDS_DIR}"

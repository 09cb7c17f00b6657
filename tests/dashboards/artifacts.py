"""The monitoring artefacts under ``dashboards/``, read the way the tests need them.

Grafana dashboards (``dashboards/grafana/*.json``), Prometheus rules
(``dashboards/prometheus/rules/*.yaml``) and their ``promtool`` unit tests, and the
metrics documented in ``docs/metrics.md``. Pure functions, no processes: the structural
tests use them directly and the end-to-end tests use them to know what to ask Prometheus.

Metrics that the design names but the code does not export yet are **pending**: panels
and rules may name them, and the end-to-end test lets their queries come back empty
(they must still parse). A pending metric stops being pending by itself as soon as
``docs/metrics.md`` documents it; from then on every panel that names it must show data.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
GRAFANA = ROOT / "dashboards" / "grafana"
PROVISIONING = GRAFANA / "provisioning"
PROMETHEUS = ROOT / "dashboards" / "prometheus"
RULES = PROMETHEUS / "rules"
RULE_TESTS = PROMETHEUS / "tests"
PROMETHEUS_CONFIG = PROMETHEUS / "prometheus.yml"
ALERTMANAGER_CONFIG = ROOT / "dashboards" / "alertmanager" / "alertmanager.yml"
METRICS_DOC = ROOT / "docs" / "metrics.md"
RUNBOOK = ROOT / "docs" / "runbook.md"

#: Metric -> the work that will export it. Named in DESIGN.md section 5, not exported yet.
PENDING_METRICS = {
    "driftgate_log_records_total": "the prediction-log writer (monitoring/prediction_log/)",
    "driftgate_log_queue_depth": "the prediction-log writer (monitoring/prediction_log/)",
}

#: Documented metrics that no panel or rule reads, and where on-call reads them instead.
#: Every other documented metric is on a panel or in a rule: a metric nobody looks at is a
#: failure nobody sees.
OFF_DASHBOARD = {
    "driftgate_auth_key_refreshes_total": "Explore: key re-reads by outcome (auth.md)",
    "driftgate_batch_rejections_total": "Explore, when a batched model answers 503 (runtime.md)",
    "driftgate_batch_splits_total": "Explore, when a batched model's errors rise (runtime.md)",
    "driftgate_canary_leader": "Explore: which gateway decides canaries (gateway.md)",
    "driftgate_canary_lease_given_up_total": "Explore, with canary_leader (gateway.md)",
    "driftgate_client_timeouts_total": "Explore: slow clients at the gateway (deploy.md)",
    "driftgate_drift_webhook_sends_total": "Explore, when the drift receiver misses alerts",
    "driftgate_drift_window_rows": "the DriftgateDriftDetected description (a query in it)",
    "driftgate_explain_duration_seconds": "Explore: the runtime's explain calls (explain.md)",
    "driftgate_feedback_total": "Explore: ground-truth labels received (prediction-log.md)",
    "driftgate_inference_calls_total": "Explore: where backend calls run (runtime.md)",
    "driftgate_log_flush_duration_seconds": "Explore, when the log writer's queue grows",
    "driftgate_log_misread_total": "Explore, when logged rows look wrong (prediction-log.md)",
    "driftgate_log_segments_total": "Explore: segments written, before compaction",
    "driftgate_malformed_requests_total": "Explore: bytes that are not HTTP (gateway.md)",
    "driftgate_replica_discoveries_total": "Explore: resolutions by outcome (runbook, discovery)",
    "driftgate_runtime_client_timeouts_total": "Explore: slow clients at a replica (runtime.md)",
    "driftgate_runtime_malformed_requests_total": "Explore: bytes that are not HTTP (metrics.md)",
    "driftgate_runtime_overload_rejections_total": "Explore, when a model answers 503 (runtime.md)",
    "driftgate_runtime_requests_in_flight": "the runtime's autoscaler (deploy.md, Scaling)",
    "driftgate_shadow_comparisons_total": "the counts behind driftgate_shadow_agreement_ratio",
    "driftgate_supervised_restarts_total": "Explore, under `driftgate up` only (runbook)",
}

#: Dashboards whose every panel shows pending metrics: their queries must parse, and may
#: come back empty (none now: a panel on a pending metric is allowed on its own).
PENDING_DASHBOARDS: dict[str, str] = {}

#: What Grafana puts in for its built-in variables, as the e2e test scrapes every second.
BUILTIN_VARIABLES = {"__rate_interval": "1m", "__interval": "15s", "__range": "5m"}

#: Values for the dashboards' own variables in the e2e test (``.*`` is "All").
TEST_VARIABLES = {"route": ".*", "model": "titanic", "version": "1"}

#: Labels Prometheus adds to every scraped series, and the histogram bucket label.
TARGET_LABELS = {"job", "instance"}

_STRING = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`')
#: A range or subquery window: ``[5m]``, ``[25h:1m]`` (its ``h:1m`` is no series name).
_WINDOW = re.compile(r"\[[^\]]*\]")
_IDENTIFIER = re.compile(r"[A-Za-z_:][A-Za-z0-9_:]*")
_METRIC = re.compile(r"driftgate_[a-z_]+")
_SUFFIXES = ("_bucket", "_sum", "_count")
_SELECTOR = re.compile(r"(driftgate_[a-z_]+)\s*\{([^}]*)\}")
_MATCHER = re.compile(r"([A-Za-z_]\w*)\s*(?:=~|!~|!=|=)")
_VARIABLE = re.compile(r"\$(?:\{(\w+)(?::\w+)?\}|(\w+))")


# -- PromQL -----------------------------------------------------------------------------


def without_strings(expr: str) -> str:
    """``expr`` with every string literal emptied (label values never name metrics)."""
    return _STRING.sub('""', expr)


def base_name(series: str) -> str:
    """The metric a series belongs to: ``x_bucket``, ``x_sum`` and ``x_count`` are ``x``."""
    for suffix in _SUFFIXES:
        if series.endswith(suffix):
            return series.removesuffix(suffix)
    return series


def _identifiers(expr: str) -> list[str]:
    """Every name in ``expr`` outside its strings and its range and subquery windows."""
    return _IDENTIFIER.findall(_WINDOW.sub("", without_strings(expr)))


def series_names(expr: str) -> set[str]:
    """The driftgate series an expression reads, as written (``x_bucket`` stays)."""
    return {i for i in _identifiers(expr) if _METRIC.fullmatch(i)}


def metric_names(expr: str) -> set[str]:
    """The driftgate metrics an expression reads, histogram suffixes stripped."""
    return {base_name(series) for series in series_names(expr)}


def recorded_names(expr: str) -> set[str]:
    """The recording-rule series an expression reads (``level:metric:operations``)."""
    return {i for i in _identifiers(expr) if ":" in i}


def selector_labels(expr: str) -> set[tuple[str, str]]:
    """``(series, label)`` for every label matcher on a driftgate series in ``expr``."""
    found = set()
    for metric, matchers in _SELECTOR.findall(expr):
        for label in _MATCHER.findall(without_strings(matchers)):
            found.add((metric, label))
    return found


def variables(expr: str) -> set[str]:
    """Grafana variables used in ``expr`` (``$name`` or ``${name}``)."""
    return {a or b for a, b in _VARIABLE.findall(expr)}


def substitute(expr: str, values: dict[str, str] | None = None) -> str:
    """``expr`` as Grafana would send it, with the test's variable values."""
    table = {**BUILTIN_VARIABLES, **TEST_VARIABLES, **(values or {})}
    return _VARIABLE.sub(lambda m: table[m.group(1) or m.group(2)], expr)


# -- Grafana ----------------------------------------------------------------------------


@dataclass(frozen=True)
class PanelQuery:
    dashboard: str  # file name, e.g. overview.json
    panel_id: int
    panel: str  # title
    ref_id: str
    expr: str

    def __str__(self) -> str:
        return f"{self.dashboard} panel {self.panel_id} {self.panel!r} query {self.ref_id}"


def dashboard_files() -> list[Path]:
    return sorted(GRAFANA.glob("*.json"))


@cache
def _load_json(path: Path) -> dict[str, Any]:
    document: dict[str, Any] = json.loads(path.read_text())
    return document


def load_dashboard(path: Path) -> dict[str, Any]:
    return _load_json(path)


def panels(dashboard: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """Every panel, including those nested in collapsed rows."""
    for panel in dashboard.get("panels", []):
        yield panel
        yield from panel.get("panels", [])


def panel_queries(path: Path) -> list[PanelQuery]:
    return [
        PanelQuery(path.name, panel["id"], panel.get("title", ""), target["refId"], target["expr"])
        for panel in panels(load_dashboard(path))
        if panel.get("type") != "row"
        for target in panel.get("targets", [])
    ]


def template_variables(dashboard: dict[str, Any]) -> list[dict[str, Any]]:
    variables: list[dict[str, Any]] = dashboard.get("templating", {}).get("list", [])
    return variables


def variable_query(variable: dict[str, Any]) -> str:
    """The query of a ``query`` variable (a string, or ``{"query": ...}`` in newer JSON)."""
    query = variable.get("query", "")
    return str(query.get("query", "") if isinstance(query, dict) else query)


# -- Prometheus rules -------------------------------------------------------------------


def rule_files() -> list[Path]:
    return sorted(RULES.glob("*.yaml"))


def rule_test_files() -> list[Path]:
    return sorted(RULE_TESTS.glob("*.yaml"))


def load_yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text())


def rules() -> list[dict[str, Any]]:
    """Every rule of every rules file, each with its group's name under ``group``."""
    return [
        {**rule, "group": group["name"]}
        for path in rule_files()
        for group in load_yaml(path)["groups"]
        for rule in group["rules"]
    ]


def alert_rules() -> list[dict[str, Any]]:
    return [rule for rule in rules() if "alert" in rule]


def recording_rules() -> list[dict[str, Any]]:
    return [rule for rule in rules() if "record" in rule]


# -- docs -------------------------------------------------------------------------------


@dataclass(frozen=True)
class DocumentedMetric:
    name: str
    type: str
    labels: frozenset[str]


def documented_metrics() -> dict[str, DocumentedMetric]:
    """The metric tables of docs/metrics.md: name, type and label names of each row."""
    found = {}
    for line in METRICS_DOC.read_text().splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if len(cells) < 3 or not re.fullmatch(r"`driftgate_[a-z_]+`", cells[0]):
            continue
        name = cells[0].strip("`")
        labels = frozenset(re.findall(r"`([a-z_]+)`", _label_names(cells[2])))
        found[name] = DocumentedMetric(name, cells[1], labels)
    return found


def _label_names(cell: str) -> str:
    """The labels cell without its value lists: "`role` (`primary`, ...)" -> "`role` "."""
    depth, kept = 0, []
    for char in cell:
        depth += char == "("
        if not depth:
            kept.append(char)
        depth -= char == ")"
    return "".join(kept)


def pending_metrics() -> dict[str, str]:
    """Pending metrics that docs/metrics.md does not document yet."""
    documented = documented_metrics()
    return {m: why for m, why in PENDING_METRICS.items() if m not in documented}


def github_anchor(heading: str) -> str:
    """The anchor GitHub gives a Markdown heading."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def runbook_anchors() -> set[str]:
    headings = re.findall(r"^#{1,6}\s+(.+?)\s*$", RUNBOOK.read_text(), flags=re.MULTILINE)
    return {github_anchor(h) for h in headings}

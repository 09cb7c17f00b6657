"""Alerts travel from the rules to a webhook: Prometheus -> Alertmanager -> receiver.

Debian's ``prometheus-alertmanager`` runs dashboards/alertmanager/alertmanager.yml with its
webhook URLs pointed at a receiver this test runs on loopback (and its group wait cut to a
second). Prometheus scrapes the session's ``driftgate up`` (tests/dashboards/traffic.py)
and evaluates two of the real alerts, DriftgateFallbackInUse (a ticket) and
DriftgateHighErrorRate (a page), exactly as in the rules file except for a ``for`` of 0s,
so that they fire at once. The test proves that each reaches the receiver its severity
routes to, in Alertmanager's webhook payload, with its labels and its rendered
annotations: the summary and description that name the cause, and the runbook link.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

from tests.dashboards.artifacts import (
    ALERTMANAGER_CONFIG,
    PROMETHEUS_CONFIG,
    RULES,
    alert_rules,
    load_yaml,
)
from tests.dashboards.stack import (
    Webhook,
    alertmanager,
    prometheus,
    scrape_config,
    webhook_receiver,
)
from tests.dashboards.traffic import ObservedSystem
from tests.e2e.gateway_system import wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.prometheus]

#: alert -> (the receiver its severity routes to, its webhook path, labels from the traffic)
DELIVERED = {
    "DriftgateFallbackInUse": (
        "tickets",
        "/ticket",
        {"route": "titanic_next", "model": "titanic", "reason": "status_5xx"},
    ),
    "DriftgateHighErrorRate": ("pager", "/page", {"route": "titanic_broken"}),
}


def firing_at_once(names: set[str]) -> dict[str, Any]:
    """A rules file with the named real alerts, unchanged but for ``for: 0s``."""
    chosen = [
        {k: v for k, v in rule.items() if k != "group"} | {"for": "0s"}
        for rule in alert_rules()
        if rule["alert"] in names
    ]
    assert {rule["alert"] for rule in chosen} == names
    return {"groups": [{"name": "driftgate.alerts.delivery-test", "rules": chosen}]}


def alertmanager_config(webhook: Webhook) -> dict[str, Any]:
    """dashboards/alertmanager/alertmanager.yml, delivering to ``webhook`` without waiting."""
    config: dict[str, Any] = load_yaml(ALERTMANAGER_CONFIG)
    for receiver in config["receivers"]:
        for hook in receiver["webhook_configs"]:
            hook["url"] = webhook.url + urlsplit(hook["url"]).path
    config["route"] |= {"group_wait": "1s", "group_interval": "1s"}
    return config


def delivered(
    webhook: Webhook, alertname: str, labels: dict[str, str]
) -> tuple[str, dict[str, Any], dict[str, Any]]:
    """The first ``(path, payload, alert)`` received for ``alertname`` with ``labels``.

    The same alert may fire for other series too (the canary route's fallbacks, while its
    broken canary was being rolled back, also fire DriftgateFallbackInUse)."""
    for path, payload in webhook.posts():
        for alert in payload["alerts"]:
            if alert["labels"]["alertname"] == alertname and (
                alert["labels"].items() >= labels.items()
            ):
                return path, payload, alert
    raise LookupError(f"{alertname} {labels}")


def all_delivered(webhook: Webhook) -> bool:
    try:
        for alertname, (_, _, labels) in DELIVERED.items():
            delivered(webhook, alertname, labels)
    except LookupError:
        return False
    return True


def test_firing_alerts_reach_the_webhook_their_severity_routes_to(
    observed: ObservedSystem, tmp_path: Path
) -> None:
    rules_path = tmp_path / "alerts-firing-at-once.yaml"
    rules_path.write_text(yaml.safe_dump(firing_at_once(set(DELIVERED)), sort_keys=False))
    with (
        webhook_receiver() as webhook,
        alertmanager(alertmanager_config(webhook), tmp_path / "alertmanager") as manager,
    ):
        config = scrape_config(
            load_yaml(PROMETHEUS_CONFIG),
            observed.targets(),
            [RULES / "driftgate-recording.yaml", rules_path],
        )
        address = manager.url.removeprefix("http://")
        config["alerting"] = {"alertmanagers": [{"static_configs": [{"targets": [address]}]}]}
        with prometheus(config, tmp_path / "prometheus"):
            wait_for(lambda: all_delivered(webhook), 60, f"{DELIVERED} delivered to the webhook")

    rules = {rule["alert"]: rule for rule in alert_rules()}
    for alertname, (receiver, path, labels) in DELIVERED.items():
        rule = rules[alertname]
        got_path, payload, alert = delivered(webhook, alertname, labels)
        assert got_path == path, (alertname, got_path)
        assert payload["version"] == "4"
        assert payload["status"] == "firing"
        assert payload["receiver"] == receiver
        assert alert["status"] == "firing"
        expected = {"alertname": alertname, **labels, **rule["labels"]}
        assert alert["labels"].items() >= expected.items(), alert["labels"]
        annotations = alert["annotations"]
        assert set(annotations) == set(rule["annotations"])
        assert annotations["runbook_url"] == rule["annotations"]["runbook_url"]
        for name in ("summary", "description"):
            assert "{{" not in annotations[name], annotations[name]
            assert labels["route"] in annotations[name], annotations[name]
        assert alert["generatorURL"].startswith("http://"), alert

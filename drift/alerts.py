"""Drift alerts posted straight to a webhook, in Alertmanager's webhook payload format.

The usual path is Prometheus: ``driftgate_drift_detected == 1`` fires the
``DriftgateDriftDetected`` rule and Alertmanager routes it. Where no Prometheus watches
the gateway, the drift job can post the same alert itself after each run: the payload is
Alertmanager's (version "4", one alert per drifted feature, same alertname and labels as
the rule), so receivers written for Alertmanager take it unchanged, and it also carries
the report link and the SQL that reproduces the window.

``alert_payload`` is pure; ``WebhookNotifier`` compares a run with what the receiver holds
as firing and posts "firing" for newly drifted features and "resolved" for those that
recovered. What the receiver holds is kept in the store by the drift job
(``drift.alert_state``), not here, so that it outlives the process.

A model version that stops serving has no run to compare: once it has had no traffic
for longer than the job's lookback, the job resolves its alerts with ``quiet_payload``
(same labels and fingerprints, annotation ``resolved_because: no_traffic``, and a
description saying that the drift was not seen to end, only the traffic). That is what
the Prometheus path does too: the gauges of a version whose latest run is a day old go
away, and ``DriftgateDriftDetected`` resolves.

A post is bounded as a whole, not per read: ``timeout_s`` from the start of the call,
never past the time left of the job run in progress (``monitoring.job_run``), and it stops
waiting at once when the run is asked to stop (the jobs process stopping), so a receiver
that never answers, or answers a byte at a time, cannot hold a shutdown. The call goes
in a thread of its own whose connection is shut down when given up on
(``drift.webhook_post``). Once the run is asked to stop,
no further post starts. A post given up on counts as not taken: the next run sends it
again (a receiver that did get it deduplicates by fingerprint).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, Literal

from prometheus_client import CollectorRegistry, Counter

from drift.alert_state import HeldFiring
from drift.findings import DriftRun, FeatureFinding
from drift.report import report_url
from drift.verdict import effect_text
from drift.webhook_post import PostStopped, post_json
from monitoring.job_run import run_time_left

log = logging.getLogger(__name__)

ALERT_NAME = "DriftgateDriftDetected"
SEVERITY = "ticket"
RECEIVER = "driftgate"
RUNBOOK_URL = "docs/runbook.md#driftgatedriftdetected"
#: Alertmanager's ``endsAt`` for an alert that has not ended (Go's zero time).
NOT_ENDED = "0001-01-01T00:00:00Z"
#: Labels the payload groups by, when every alert shares them.
GROUP_BY = ("alertname", "model", "version", "arm")
#: The annotation that says why an alert was resolved when no run saw the drift end.
RESOLVED_BECAUSE = "resolved_because"

AlertStatus = Literal["firing", "resolved"]


def alert_payload(
    runs: Sequence[DriftRun],
    *,
    external_url: str,
    status: AlertStatus,
    features: Mapping[str, Iterable[str]] | None = None,
) -> dict[str, Any]:
    """The webhook body for ``runs``: one alert per drifted feature of each run.

    ``features`` (run id -> feature names) picks other features instead, e.g. those that
    recovered when sending "resolved"; a named feature the run did not test still gets
    an alert, without numbers.
    """
    alerts: list[dict[str, Any]] = []
    for run in runs:
        chosen = (
            list(dict.fromkeys(f.feature for f in run.drifted))
            if features is None
            else list(dict.fromkeys(features.get(run.run_id, ())))
        )
        alerts.extend(_alert(run, name, status, external_url) for name in chosen)
    return _envelope(alerts, status, external_url)


def quiet_payload(
    held: HeldFiring,
    *,
    now: datetime,
    last_seen: datetime | None,
    lookback_s: float,
    sql: str,
    external_url: str,
) -> dict[str, Any]:
    """The webhook body resolving ``held``'s alerts because its model version went quiet:
    no answered request in the last ``lookback_s`` (``last_seen``: its latest one still in
    the store, if any), so no drift run checks it any more."""
    where = f"model {held.model} version {held.version} (arm {held.arm})"
    report = external_url.rstrip("/") + report_url(held.model, held.version, "latest")
    last = (
        f"its last answered request was logged at {_rfc3339(last_seen)}"
        if last_seen is not None
        else "the store holds no answered request of it any more"
    )
    ended = _rfc3339(now)
    alerts = []
    for feature in sorted(held.firing):
        labels = _labels(held.model, held.version, held.arm, feature)
        alerts.append(
            {
                "status": "resolved",
                "labels": labels,
                "annotations": {
                    "summary": f"drift alert on {where}, feature {feature}: no traffic",
                    "description": (
                        f"Resolved because {where} went quiet: no answered request in the "
                        f"last {_duration(lookback_s)} (the drift job's lookback_s), and "
                        f"{last}, so the drift job no longer checks it. The drift was not "
                        "seen to end. Should the version serve again, the next run checks "
                        "it and fires again if it still drifts."
                    ),
                    RESOLVED_BECAUSE: "no_traffic",
                    "report": report,
                    "sql": sql,
                    "runbook_url": RUNBOOK_URL,
                },
                "startsAt": ended,
                "endsAt": ended,
                "generatorURL": report,
                "fingerprint": fingerprint(labels),
            }
        )
    return _envelope(alerts, "resolved", external_url)


def _envelope(
    alerts: list[dict[str, Any]], status: AlertStatus, external_url: str
) -> dict[str, Any]:
    common_labels = _common([a["labels"] for a in alerts])
    common_annotations = _common([a["annotations"] for a in alerts])
    group_labels = {k: v for k, v in common_labels.items() if k in GROUP_BY} or {
        "alertname": ALERT_NAME
    }
    return {
        "version": "4",
        "groupKey": "{}:" + _label_set(group_labels),
        "truncatedAlerts": 0,
        "status": status,
        "receiver": RECEIVER,
        "groupLabels": group_labels,
        "commonLabels": common_labels,
        "commonAnnotations": common_annotations,
        "externalURL": external_url,
        "alerts": alerts,
    }


def _labels(model: str, version: str, arm: str, feature: str) -> dict[str, str]:
    return {
        "alertname": ALERT_NAME,
        "severity": SEVERITY,
        "model": model,
        "version": version,
        "arm": arm,
        "feature": feature,
    }


def _alert(run: DriftRun, feature: str, status: AlertStatus, external_url: str) -> dict[str, Any]:
    labels = _labels(run.model, run.version, run.arm, feature)
    base = external_url.rstrip("/")
    report = base + (run.report or "/reports/index.html")
    finding = _finding(run, feature)
    started = _rfc3339(run.timestamp)
    where = f"model {run.model} version {run.version} (arm {run.arm})"
    return {
        "status": status,
        "labels": labels,
        "annotations": {
            "summary": (
                f"drift on {where}, feature {feature}"
                if status == "firing"
                else f"drift resolved on {where}, feature {feature}"
            ),
            "description": _description(run, feature, finding, status),
            "report": report,
            "sql": run.sql,
            "runbook_url": RUNBOOK_URL,
        },
        "startsAt": started,
        "endsAt": NOT_ENDED if status == "firing" else started,
        "generatorURL": report,
        "fingerprint": fingerprint(labels),
    }


def _finding(run: DriftRun, feature: str) -> FeatureFinding | None:
    """The feature's finding, the drifted one when it has several (input and output)."""
    matches = [f for f in run.findings if f.feature == feature]
    drifted = [f for f in matches if f.result.drifted]
    return next(iter(drifted or matches), None)


def _description(
    run: DriftRun, feature: str, finding: FeatureFinding | None, status: AlertStatus
) -> str:
    window = run.window
    seen = (
        f"over the {window.kind} window {_rfc3339(window.start)} to {_rfc3339(window.end)} "
        f"({window.rows} rows, reference {run.reference_id})"
    )
    if finding is None:
        return f"Feature {feature} was not tested by run {run.run_id} {seen}."
    result = finding.result
    p_value = "none" if result.p_value is None else f"{result.p_value:.4g}"
    # KS's effect size is its score: said again only beside a floor.
    repeats_score = result.min_effect is None and result.effect == result.score
    effect = "" if repeats_score else effect_text(result)
    numbers = (
        f"test {result.statistic}: score {result.score:.4g}, threshold {result.threshold:.4g} "
        f"(on the {result.compares.replace('_', '-')}), p-value {p_value}"
        + (f", {effect}" if effect else "")
    )
    if status == "firing":
        return f"Feature {feature} drifted from its reference {seen}: {numbers}."
    return f"Feature {feature} no longer differs from its reference {seen}: {numbers}."


def fingerprint(labels: Mapping[str, str]) -> str:
    """Prometheus's fingerprint of a label set (FNV-1a 64 over sorted name/value pairs),
    so that a receiver deduplicating by fingerprint treats these like Alertmanager's."""
    value = 14695981039346656037
    for name in sorted(labels):
        for text in (name, labels[name]):
            for byte in (*text.encode("utf-8"), 0xFF):
                value = ((value ^ byte) * 1099511628211) & 0xFFFFFFFFFFFFFFFF
    return f"{value:016x}"


def _common(mappings: list[dict[str, str]]) -> dict[str, str]:
    if not mappings:
        return {}
    first, *rest = mappings
    return {k: v for k, v in first.items() if all(m.get(k) == v for m in rest)}


def _label_set(labels: Mapping[str, str]) -> str:
    """Alertmanager's text form of a label set: ``{a="x", b="y"}``, names sorted."""
    pairs = ", ".join(f"{k}={json.dumps(labels[k])}" for k in sorted(labels))
    return "{" + pairs + "}"


def _duration(seconds: float) -> str:
    for unit, size in (("h", 3600), ("min", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{seconds / size:g} {unit}"
    return f"{seconds:g} s"


def _rfc3339(moment: datetime) -> str:
    utc = moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
    return utc.isoformat().replace("+00:00", "Z")


class WebhookNotifier:
    """Posts drift alerts to ``url`` when a run's verdicts differ from what the receiver
    holds as firing.

    One notifier per registry: it registers ``driftgate_drift_webhook_sends_total``.
    """

    def __init__(
        self,
        url: str,
        external_url: str,
        timeout_s: float = 5.0,
        *,
        registry: CollectorRegistry,
    ) -> None:
        self.url = url
        self.external_url = external_url
        self.timeout_s = timeout_s
        self.sends = Counter(
            "driftgate_drift_webhook_sends_total",
            "Drift alert webhook posts by outcome (ok|error).",
            ["outcome"],
            registry=registry,
        )

    def notify(self, previous: Mapping[str, bool], run: DriftRun) -> dict[str, bool]:
        """Send "firing" for features drifted now and not in ``previous`` (drifted by
        feature, as the receiver holds them), "resolved" for the reverse. Never raises.

        Returns what the receiver now holds, the ``previous`` of the next run: the run's
        verdicts, except for changes whose post failed, which keep their old state and so
        are sent again by the next run (a webhook down for a while loses no alert, as long
        as the caller keeps this across processes: ``drift.alert_state``).
        """
        now = {f.feature for f in run.drifted}
        was = {feature for feature, drifted in previous.items() if drifted}
        known = {f.feature: f.result.drifted for f in run.findings}
        changes: list[tuple[AlertStatus, list[str]]] = [
            ("firing", sorted(now - was)),
            ("resolved", sorted(was - now)),
        ]
        for status, features in changes:
            if features and not self._send(run, status, features):
                known.update({feature: status == "resolved" for feature in features})
        return known

    def resolve_quiet(
        self,
        held: HeldFiring,
        *,
        now: datetime,
        last_seen: datetime | None,
        lookback_s: float,
        sql: str,
    ) -> bool:
        """Send "resolved" for ``held``'s alerts, its version having gone quiet
        (``quiet_payload``). Never raises; whether the receiver took it."""
        try:
            payload = quiet_payload(
                held,
                now=now,
                last_seen=last_seen,
                lookback_s=lookback_s,
                sql=sql,
                external_url=self.external_url,
            )
        except Exception:
            self.sends.labels("error").inc()
            log.exception("could not build the drift alert resolving %s", held.key)
            return False
        return self._post(payload)

    def _send(self, run: DriftRun, status: AlertStatus, features: list[str]) -> bool:
        """Whether the receiver took the alert for ``features``."""
        try:
            payload = alert_payload(
                [run],
                external_url=self.external_url,
                status=status,
                features={run.run_id: features},
            )
        except Exception:
            self.sends.labels("error").inc()
            log.exception("could not build the drift alert for %s", run.run_id)
            return False
        return self._post(payload)

    def _post(self, payload: dict[str, Any]) -> bool:
        """Whether the receiver took ``payload``, within ``timeout_s`` as a whole (less when
        the job run has less left); False at once when the run is asked to stop."""
        left = run_time_left()
        if left is not None and left <= 0:
            log.warning("drift alert not sent to the webhook: the job run is stopping")
            return False
        timeout = self.timeout_s if left is None else min(self.timeout_s, left)
        try:
            post_json(self.url, payload, timeout)
        except PostStopped:
            log.warning("drift alert webhook %s: given up, the job run is stopping", self.url)
            return False
        except Exception as exc:
            self.sends.labels("error").inc()
            log.warning("drift alert webhook %s failed: %s", self.url, exc)
            return False
        self.sends.labels("ok").inc()
        return True

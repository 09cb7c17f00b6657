"""drift.alerts: the Alertmanager-format payload, and the notifier against a real HTTP server."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import replace

import pytest
from opentelemetry.trace import NoOpTracer
from prometheus_client import CollectorRegistry

from drift.alerts import ALERT_NAME, NOT_ENDED, WebhookNotifier, alert_payload, fingerprint
from drift.verdict import DriftStat
from monitoring.jobs import JobScheduler
from tests.drift.receiver import Receiver, running_receiver, running_slow_receiver
from tests.drift.runs import WINDOW_SQL, make_run

EXTERNAL = "http://gateway.example:8080/"
REPORT = "/reports/drift/titanic/2/run-0001.html"


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with running_receiver() as server:
        yield server


def sends(registry: CollectorRegistry, outcome: str) -> float:
    value = registry.get_sample_value("driftgate_drift_webhook_sends_total", {"outcome": outcome})
    return value or 0.0


def test_payload_has_alertmanagers_shape_with_one_alert_per_drifted_feature() -> None:
    run = make_run(report=REPORT)
    payload = alert_payload([run], external_url=EXTERNAL, status="firing")

    assert payload["version"] == "4"
    assert payload["status"] == "firing"
    assert payload["receiver"] == "driftgate"
    assert payload["truncatedAlerts"] == 0
    assert payload["externalURL"] == EXTERNAL
    assert payload["groupLabels"] == {
        "alertname": ALERT_NAME,
        "model": "titanic",
        "version": "2",
        "arm": "primary",
    }
    assert payload["groupKey"] == (
        '{}:{alertname="DriftgateDriftDetected", arm="primary", model="titanic", version="2"}'
    )
    [alert] = payload["alerts"]
    assert alert["labels"] == {
        "alertname": ALERT_NAME,
        "severity": "ticket",
        "model": "titanic",
        "version": "2",
        "arm": "primary",
        "feature": "sex",
    }
    assert payload["commonLabels"] == alert["labels"]
    assert alert["startsAt"] == "2025-03-14T09:30:00Z"
    assert alert["endsAt"] == NOT_ENDED
    annotations = alert["annotations"]
    assert annotations["report"] == "http://gateway.example:8080" + REPORT
    assert annotations["sql"] == WINDOW_SQL
    assert annotations["runbook_url"].endswith("#driftgatedriftdetected")
    assert "feature sex" in annotations["summary"]
    description = annotations["description"]
    for part in ("chi_square", "181.7", "0.0125", "1.2e-09", "2025-03-14T08:30:00Z", "505 rows"):
        assert part in description
    assert alert["fingerprint"] == fingerprint(alert["labels"])
    json.dumps(payload)  # plain JSON


def test_the_description_gives_an_effect_size_unless_it_repeats_the_score() -> None:
    """KS's effect size is its score (D): said twice it read 'score 0.3 ... D 0.3'."""
    run = make_run()
    chi = DriftStat("chi_square", 181.7, 1.2e-9, threshold=0.0125, drifted=True, effect=0.26)
    ks = DriftStat("ks", 0.3, 1e-12, threshold=0.0125, drifted=True, effect=0.3)
    floored = replace(ks, min_effect=0.1)

    def description(result: DriftStat) -> str:
        findings = tuple(
            replace(f, result=result) if f.feature == "sex" else f for f in run.findings
        )
        payload = alert_payload(
            [replace(run, findings=findings)], external_url=EXTERNAL, status="firing"
        )
        return str(payload["alerts"][0]["annotations"]["description"])

    assert description(chi).endswith("p-value 1.2e-09, Cramér's V 0.26.")
    assert description(ks).endswith("p-value 1e-12.")
    assert description(floored).endswith("p-value 1e-12, D 0.3 > min_effect.ks 0.1.")


def test_payload_over_several_runs_groups_by_the_common_labels() -> None:
    runs = [
        make_run(arm="primary", categorical_feature="sex"),
        make_run(arm="shadow", categorical_feature="embarked"),
        make_run(arm="shadow", run_id="quiet", categorical_drifted=False),
    ]
    payload = alert_payload(runs, external_url=EXTERNAL, status="firing")
    assert [a["labels"]["feature"] for a in payload["alerts"]] == ["sex", "embarked"]
    assert payload["groupLabels"] == {"alertname": ALERT_NAME, "model": "titanic", "version": "2"}
    assert "feature" not in payload["commonLabels"]
    assert "summary" not in payload["commonAnnotations"]
    assert len({a["fingerprint"] for a in payload["alerts"]}) == 2


def test_fingerprint_matches_prometheus() -> None:
    # The vectors of TestMetricToFingerprint in prometheus/common (model/signature_test.go).
    assert fingerprint({}) == f"{14695981039346656037:016x}"
    labels = {"name": "garland, briggs", "fear": "love is not enough"}
    assert fingerprint(labels) == f"{5799056148416392346:016x}"


def test_notifier_sends_firing_then_resolved(receiver: Receiver) -> None:
    registry = CollectorRegistry()
    notifier = WebhookNotifier(receiver.url, EXTERNAL, timeout_s=5.0, registry=registry)

    notifier.notify({"age": False, "sex": False}, make_run(report=REPORT))
    notifier.notify({"age": False, "sex": True}, make_run(run_id="same"))  # still drifted
    quiet = make_run(run_id="run-0002", categorical_drifted=False)
    notifier.notify({"age": False, "sex": True}, quiet)

    assert [body["status"] for body in receiver.bodies] == ["firing", "resolved"]
    firing, resolved = receiver.bodies
    assert [a["labels"]["feature"] for a in firing["alerts"]] == ["sex"]
    [alert] = resolved["alerts"]
    assert alert["status"] == "resolved"
    assert alert["labels"]["feature"] == "sex"
    assert alert["endsAt"] == "2025-03-14T09:30:00Z"
    assert "no longer differs" in alert["annotations"]["description"]
    assert alert["fingerprint"] == firing["alerts"][0]["fingerprint"]  # the same alert
    assert sends(registry, "ok") == 2
    assert sends(registry, "error") == 0


def test_notifier_counts_a_failure_and_does_not_raise() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed_port = probe.getsockname()[1]
    registry = CollectorRegistry()
    notifier = WebhookNotifier(
        f"http://127.0.0.1:{closed_port}/hook", EXTERNAL, timeout_s=2.0, registry=registry
    )
    notifier.notify({}, make_run())
    assert sends(registry, "error") == 1
    assert sends(registry, "ok") == 0


def test_an_alert_the_receiver_did_not_take_is_sent_again_by_the_next_run(
    receiver: Receiver,
) -> None:
    """The new state was kept whether or not the post went through: a firing alert sent
    while the receiver was down was never sent again, though the drift persisted."""
    notifier = WebhookNotifier(receiver.url, EXTERNAL, registry=CollectorRegistry())
    drifted, quiet = make_run(), make_run(run_id="run-0002", categorical_drifted=False)

    receiver.failing = True
    heard = notifier.notify({"age": False, "sex": False}, drifted)
    assert heard["sex"] is False  # not delivered: still "not drifted" for the receiver
    receiver.failing = False
    heard = notifier.notify(heard, drifted)
    assert heard["sex"] is True
    receiver.failing = True
    heard = notifier.notify(heard, quiet)
    assert heard["sex"] is True
    receiver.failing = False
    heard = notifier.notify(heard, quiet)

    assert [body["status"] for body in receiver.bodies] == ["firing", "resolved"]
    assert heard["sex"] is False


def test_a_post_is_bounded_as_a_whole_not_per_read() -> None:
    """A receiver answering a byte at a time kept every read within the timeout, and the
    post (and the drift run, and every job of the process) for as long as it kept on."""
    registry = CollectorRegistry()
    with running_slow_receiver(trickle=True) as receiver:
        notifier = WebhookNotifier(receiver.url, EXTERNAL, timeout_s=0.5, registry=registry)
        began = time.monotonic()
        heard = notifier.notify({}, make_run())
        assert time.monotonic() - began < 3
    assert heard["sex"] is False  # not taken: sent again by the next run
    assert sends(registry, "error") == 1


def test_a_post_given_up_on_leaves_no_thread_behind() -> None:
    """Its thread went on reading for as long as the receiver kept trickling: one more
    thread (and socket) per post given up on, every run, without bound."""
    registry = CollectorRegistry()
    before = set(threading.enumerate())
    with running_slow_receiver(trickle=True) as receiver:  # 10 s of answer per post
        notifier = WebhookNotifier(receiver.url, EXTERNAL, timeout_s=0.3, registry=registry)
        for _ in range(3):
            assert notifier.notify({}, make_run())["sex"] is False
        deadline = time.monotonic() + 2
        while time.monotonic() < deadline and left_behind(before):
            time.sleep(0.05)
        assert left_behind(before) == []
    assert sends(registry, "error") == 3


def left_behind(before: set[threading.Thread]) -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "drift webhook" and t not in before]


def test_a_stop_cuts_a_post_short_and_starts_no_other() -> None:
    """Stopping the jobs waited for a receiver that never answers (the post's timeout,
    per read); the alerts not delivered keep the receiver's old state, so the next run
    sends them."""
    registry = CollectorRegistry()
    results: list[dict[str, bool]] = []
    with running_slow_receiver() as receiver:
        notifier = WebhookNotifier(receiver.url, EXTERNAL, timeout_s=60.0, registry=registry)
        jobs = JobScheduler(registry, NoOpTracer())
        # "sex" starts drifting and "age" stops: two posts, "firing" first.
        run = make_run()
        jobs.add("drift", 60, lambda: results.append(notifier.notify({"age": True}, run)))
        jobs.start()
        assert receiver.heard.wait(10)
        began = time.monotonic()
        jobs.stop()
        assert time.monotonic() - began < 2
        assert [body["status"] for body in receiver.bodies] == ["firing"]  # no "resolved"
    (heard,) = results
    assert heard["sex"] is False and heard["age"] is True  # as the receiver held them
    assert sends(registry, "ok") == 0

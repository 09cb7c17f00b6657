"""The drift job's webhook across runs and processes: an alert the receiver did not take is
sent by a later run (a CronJob's new process included), a version whose traffic stopped
has its alerts resolved as gone quiet, and a stop during a post loses nothing."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from opentelemetry import trace
from prometheus_client import CollectorRegistry

from drift.alert_state import read_firing
from drift.alerts import WebhookNotifier
from drift.job import DriftJob
from drift.settings import DriftSettings, WindowSettings
from driftgate.cli import main
from driftgate.jobs import build_jobs
from monitoring.prediction_log import run_sql
from tests.cli_logging import root_logging  # noqa: F401  (an autouse fixture)
from tests.drift.job_traffic import EXTERNAL, START, traffic, write_traffic
from tests.drift.receiver import Receiver, running_receiver, running_slow_receiver


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with running_receiver() as server:
        yield server


def test_a_cronjob_delivers_what_an_earlier_run_could_not(
    tmp_path: Path, repository: Path, receiver: Receiver
) -> None:
    """``driftgate jobs --once`` is a new process every run: an alert the receiver did
    not take must be sent by the next run all the same, "firing" and "resolved" alike."""
    store = tmp_path / "store"
    config = tmp_path / "gateway.yaml"
    config.write_text(
        "auth: {enabled: false}\nlog: {store: store}\n"
        f"drift: {{window: {{rows: 2000}}, min_rows: 500, webhook: {receiver.url}}}\n"
    )
    now = datetime.now(UTC)

    def once() -> None:
        assert main(["jobs", "--once", "--config", str(config), "--job", "drift"]) == 0

    write_traffic(store, traffic(2000, seed=3, fare_shift=25.0), "1", now - timedelta(minutes=5))
    receiver.failing = True
    once()
    receiver.failing = False
    once()
    fired = receiver.alerts()
    assert ("firing", "fare") in fired
    assert {status for status, _ in fired} == {"firing"}
    once()  # still drifted, and the receiver has it: nothing to send
    assert receiver.alerts() == fired

    write_traffic(store, traffic(2000, seed=4), "1", now - timedelta(minutes=1))  # back to normal
    receiver.failing = True
    once()
    receiver.failing = False
    once()

    resolved = receiver.alerts()[len(fired) :]
    assert sorted(resolved) == sorted(("resolved", feature) for _, feature in fired)
    assert read_firing(store, "titanic/1/a", receiver.url) == frozenset()


def test_an_alert_of_a_version_whose_traffic_stopped_is_resolved_as_gone_quiet(
    tmp_path: Path, repository: Path, receiver: Receiver
) -> None:
    """Runs check only versions with traffic in the lookback: a version that stopped
    serving while drifted was never checked again, and the receiver held its alert as
    firing for ever. Past the lookback it is resolved, saying why, and forgotten."""
    store = tmp_path / "store"
    now = [START + timedelta(minutes=5)]
    job = DriftJob(
        store,
        DriftSettings(window=WindowSettings(rows=2000), min_rows=500, lookback_s=3600),
        tmp_path / "models",
        trace.NoOpTracer(),
        notifier=WebhookNotifier(receiver.url, EXTERNAL, registry=CollectorRegistry()),
        clock=lambda: now[0],
    )
    write_traffic(store, traffic(2000, seed=3, fare_shift=25.0), "1", START)
    job.run()
    (fired,) = receiver.bodies
    assert fired["status"] == "firing"
    features = sorted(alert["labels"]["feature"] for alert in fired["alerts"])
    assert "fare" in features

    now[0] = START + timedelta(minutes=50)  # quiet, but within the lookback: still checked
    job.run()
    assert receiver.bodies == [fired]

    now[0] = START + timedelta(hours=2)  # no traffic for longer than the lookback
    summary = job.run()
    assert "resolved as quiet: titanic/1 arm a" in summary, summary
    assert len(receiver.bodies) == 2
    resolved = receiver.bodies[1]
    assert resolved["status"] == "resolved"
    assert sorted(alert["labels"]["feature"] for alert in resolved["alerts"]) == features
    before = {alert["labels"]["feature"]: alert for alert in fired["alerts"]}
    for alert in resolved["alerts"]:
        # The same alert as far as any receiver can tell: labels and fingerprint.
        assert alert["labels"] == before[alert["labels"]["feature"]]["labels"]
        assert alert["fingerprint"] == before[alert["labels"]["feature"]]["fingerprint"]
        annotations = alert["annotations"]
        assert annotations["resolved_because"] == "no_traffic"
        assert "no traffic" in annotations["summary"]
        assert "not seen to end" in annotations["description"]
        assert "2026-11-20T12:00:01.999" in annotations["description"]  # its last row
        assert run_sql(store, annotations["sql"]).rows[0][0] is not None
        assert alert["endsAt"].startswith("2026-11-20T14:00:00")
    assert read_firing(store, "titanic/1/a", receiver.url) == frozenset()

    now[0] = START + timedelta(hours=3)  # said once
    job.run()
    assert len(receiver.bodies) == 2

    # Serving again, still drifted: checked again, and firing again.
    write_traffic(store, traffic(2000, seed=5, fare_shift=25.0), "1", START + timedelta(hours=3))
    now[0] = START + timedelta(hours=3, minutes=5)
    job.run()
    assert receiver.bodies[2]["status"] == "firing"
    assert ("firing", "fare") in receiver.alerts()[-len(features) :]


def test_stopping_the_jobs_during_a_post_ends_the_run_and_the_next_run_sends_the_alert(
    tmp_path: Path, repository: Path
) -> None:
    """SIGTERM to ``driftgate jobs`` while the webhook did not answer waited for the post's
    timeout, then for the run; the alert it could not deliver must not be lost."""
    store = tmp_path / "store"
    write_traffic(store, traffic(2000, seed=3, fare_shift=25.0), "1", datetime.now(UTC))
    with running_slow_receiver() as receiver:
        config = tmp_path / "gateway.yaml"
        config.write_text(
            "auth: {enabled: false}\nlog: {store: store}\n"
            f"drift: {{window: {{rows: 2000}}, min_rows: 500, webhook: {receiver.url}}}\n"
        )
        process = build_jobs(config, only=["drift"])
        process.scheduler.start()
        assert receiver.heard.wait(60)  # the run is posting "firing", and gets no answer
        began = time.monotonic()
        process.scheduler.stop()
        assert time.monotonic() - began < 2.5

        runs = {
            outcome: process.registry.get_sample_value(
                "driftgate_job_runs_total", {"job": "drift", "outcome": outcome}
            )
            for outcome in ("ok", "error", "stopped")
        }
        assert runs == {"ok": None, "error": None, "stopped": 1.0}
        # Nothing recorded as delivered: the next run (here a new process) sends it again.
        assert read_firing(store, "titanic/1/a", receiver.url) == frozenset()
        receiver.release.set()  # answering from now on
        again = build_jobs(config, only=["drift"])
        assert again.scheduler.run_once(again.scheduler.jobs[0])
    statuses = [
        (body["status"], body["alerts"][0]["labels"]["feature"]) for body in receiver.bodies
    ]
    assert statuses == [("firing", "fare"), ("firing", "fare")]
    assert "fare" in read_firing(store, "titanic/1/a", receiver.url)

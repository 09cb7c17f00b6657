"""drift.alert_state: what the webhook's receiver holds as firing outlives the jobs process.

Each ``new_process`` below is what a fresh ``driftgate jobs`` builds (a deploy, a crash, a
CronJob's ``--once``): its own job and notifier, sharing nothing but the store. The
receiver is a real HTTP server on loopback.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from pathlib import Path

import pytest
from opentelemetry import trace
from prometheus_client import CollectorRegistry

from drift.alert_state import (
    forget_firing,
    held_firing,
    read_firing,
    record_firing,
    state_path,
    webhook_digest,
)
from drift.alerts import WebhookNotifier
from drift.job import DriftJob
from drift.settings import DriftSettings
from tests.drift.receiver import Receiver, running_receiver
from tests.drift.runs import RUN_TIME, make_run

EXTERNAL = "http://gateway.example:8080/"
KEY = "titanic/2/primary"


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with running_receiver() as server:
        yield server


def new_process(store: Path, webhook: str) -> DriftJob:
    """The drift job and notifier of a new jobs process over ``store``."""
    notifier = WebhookNotifier(webhook, EXTERNAL, timeout_s=5.0, registry=CollectorRegistry())
    return DriftJob(
        store,
        DriftSettings(webhook=webhook),
        store.parent / "models",
        trace.NoOpTracer(),
        notifier=notifier,
        clock=lambda: RUN_TIME,
    )


def test_a_firing_alert_not_delivered_before_a_restart_is_sent_by_the_next_process(
    tmp_path: Path, receiver: Receiver
) -> None:
    """The new process took the last published verdicts for what the receiver knew, so
    the drift it had never heard of was never announced."""
    store = tmp_path / "store"
    receiver.failing = True
    new_process(store, receiver.url).publish(make_run(run_id="run-0001"))
    assert receiver.alerts() == []

    receiver.failing = False
    new_process(store, receiver.url).publish(make_run(run_id="run-0002"))

    assert receiver.alerts() == [("firing", "sex")]
    assert read_firing(store, KEY, receiver.url) == {"sex"}


def test_a_resolved_alert_not_delivered_before_a_restart_is_sent_by_the_next_process(
    tmp_path: Path, receiver: Receiver
) -> None:
    """The new process took the last published verdicts ("sex" no longer drifted) for
    what the receiver knew, so on-call's alert never resolved."""
    store = tmp_path / "store"
    new_process(store, receiver.url).publish(make_run(run_id="run-0001"))
    receiver.failing = True
    quiet = make_run(run_id="run-0002", categorical_drifted=False)
    new_process(store, receiver.url).publish(quiet)  # the receiver still has "sex"

    receiver.failing = False
    new_process(store, receiver.url).publish(make_run(run_id="run-0003", categorical_drifted=False))

    assert receiver.alerts() == [("firing", "sex"), ("resolved", "sex")]
    assert read_firing(store, KEY, receiver.url) == frozenset()


def test_what_was_delivered_is_not_sent_again_by_the_next_process(
    tmp_path: Path, receiver: Receiver
) -> None:
    store = tmp_path / "store"
    for run_id in ("run-0001", "run-0002", "run-0003"):  # the drift goes on, a process a run
        new_process(store, receiver.url).publish(make_run(run_id=run_id))
    new_process(store, receiver.url).publish(make_run(run_id="q1", categorical_drifted=False))
    new_process(store, receiver.url).publish(make_run(run_id="q2", categorical_drifted=False))

    assert receiver.alerts() == [("firing", "sex"), ("resolved", "sex")]


def test_the_state_keeps_each_model_version_and_arm_apart(
    tmp_path: Path, receiver: Receiver
) -> None:
    store = tmp_path / "store"
    job = new_process(store, receiver.url)
    job.publish(make_run(arm="primary", categorical_feature="sex"))
    job.publish(make_run(arm="shadow", categorical_feature="embarked"))
    job.publish(make_run(version="3", categorical_drifted=False))

    state = json.loads(state_path(store).read_text())
    assert {key: entry["firing"] for key, entry in state.items()} == {
        "titanic/2/primary": ["sex"],
        "titanic/2/shadow": ["embarked"],
    }  # nothing was ever sent for version 3: nothing to keep
    assert state[KEY]["webhook_sha256"] == webhook_digest(receiver.url)
    assert receiver.url not in state_path(store).read_text()  # a URL may carry a token
    assert state[KEY]["run_id"] == "run-0001"
    assert list((store / ".staging").glob("*.tmp")) == []  # replaced whole, nothing left


def test_a_receiver_at_a_new_url_hears_the_drift_going_on(
    tmp_path: Path, receiver: Receiver
) -> None:
    store = tmp_path / "store"
    record_firing(
        store, KEY, "http://old.example/hook", ["sex"], run_id="run-0000", updated=RUN_TIME
    )

    new_process(store, receiver.url).publish(make_run())

    assert receiver.alerts() == [("firing", "sex")]


def test_an_unreadable_state_sends_what_fires_again_with_a_warning(
    tmp_path: Path, receiver: Receiver, caplog: pytest.LogCaptureFixture
) -> None:
    store = tmp_path / "store"
    new_process(store, receiver.url).publish(make_run())
    state_path(store).write_text("{not json")

    with caplog.at_level(logging.WARNING, logger="drift.alert_state"):
        new_process(store, receiver.url).publish(make_run(run_id="run-0002"))

    assert receiver.alerts() == [("firing", "sex"), ("firing", "sex")]  # once too often
    assert "ignoring the drift webhook's delivery state" in caplog.text
    assert read_firing(store, KEY, receiver.url) == {"sex"}  # and the file is whole again


def test_held_firing_names_each_version_of_this_webhook_even_in_an_older_file(
    tmp_path: Path,
) -> None:
    """What the quiet-version check reads: entries of this webhook that hold a firing
    alert, named by model, version and arm (a model name may hold a slash)."""
    store = tmp_path / "store"
    webhook = "http://receiver.example/hook"
    record_firing(
        store,
        "digits/v2 beta/3/a",
        webhook,
        ["pixels"],
        run_id="r1",
        updated=RUN_TIME,
        target=("digits/v2 beta", "3", "a"),
    )
    record_firing(store, "titanic/2/primary", webhook, [], run_id="r2", updated=RUN_TIME)
    record_firing(
        store, "titanic/3/b", "http://other.example/", ["x"], run_id="r3", updated=RUN_TIME
    )
    entries = json.loads(state_path(store).read_text())
    entries["iris/1/stable"] = {  # written before entries named their version
        "webhook_sha256": webhook_digest(webhook),
        "firing": ["petal"],
        "run_id": "r0",
        "updated": RUN_TIME.isoformat(),
    }
    state_path(store).write_text(json.dumps(entries))

    held = held_firing(store, webhook)

    assert [(h.model, h.version, h.arm, h.firing) for h in held] == [
        ("digits/v2 beta", "3", "a", frozenset({"pixels"})),
        ("iris", "1", "stable", frozenset({"petal"})),
    ]


def test_forget_firing_keeps_an_entry_that_fired_again_meanwhile(tmp_path: Path) -> None:
    store = tmp_path / "store"
    webhook = "http://receiver.example/hook"
    record_firing(store, KEY, webhook, ["sex"], run_id="r1", updated=RUN_TIME)
    record_firing(store, KEY, webhook, ["sex", "age"], run_id="r2", updated=RUN_TIME)

    assert not forget_firing(store, KEY, webhook, {"sex"})
    assert read_firing(store, KEY, webhook) == {"sex", "age"}
    assert forget_firing(store, KEY, webhook, {"sex", "age"})
    assert KEY not in json.loads(state_path(store).read_text())

"""The drift job over a real store: every model version with traffic checked against its
reference, with every output written (rows, latest results, report, span events).

The store is written by the real ``PredictionLogWriter``; the reference profile is saved
beside the model version in a model repository folder, as ``driftgate reference build``
does. Traffic is synthetic so that what is shifted is known.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from prometheus_client import CollectorRegistry

from drift.alert_state import read_firing
from drift.alerts import WebhookNotifier
from drift.job import DriftJob
from drift.profile import build_profile
from drift.references import ReferenceStore
from drift.settings import DriftSettings, WindowSettings, parse_drift_section
from driftgate.cli import main
from driftgate.jobs import JobsConfigError, build_jobs
from monitoring.job_results import read_latest
from monitoring.prediction_log import LogSettings, PredictionLogWriter, PredictionRecord, run_sql
from tests.cli_logging import root_logging  # noqa: F401  (an autouse fixture)
from tests.drift.receiver import Receiver, running_receiver, running_slow_receiver

START = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)
EXTERNAL = "http://gateway.example:8080"


def _columns(rows: int, seed: int, fare_shift: float = 0.0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {
        "in_fare": rng.gamma(2.0, 15.0, rows) + fare_shift,
        "in_age": rng.normal(30, 12, rows),
        "in_sex": rng.choice(np.array(["male", "female"], dtype=object), rows, p=[0.65, 0.35]),
    }


def _write(store: Path, columns: dict[str, np.ndarray], version: str, start: datetime) -> None:
    writer = PredictionLogWriter(store, LogSettings(store=str(store)), CollectorRegistry())
    writer.start()
    rows = len(columns["in_fare"])
    writer.submit(
        [
            PredictionRecord(
                request_id=f"{version}-{start.timestamp()}-{i}",
                row=0,
                timestamp=start + timedelta(milliseconds=i),
                route="titanic",
                arm="a",
                role="primary",
                model="titanic",
                version=version,
                replica="http://127.0.0.1:8001",
                dialect="eval",
                status=200,
                latency_s=0.003,
                trace_id=None,
                inputs={name[3:]: _plain(values[i]) for name, values in columns.items()},
                outputs={"survived": int(columns["in_fare"][i] > 40)},
            )
            for i in range(rows)
        ]
    )
    writer.close()


def _plain(value: object) -> object:
    return value.item() if isinstance(value, np.generic) else value


@pytest.fixture
def spans() -> InMemorySpanExporter:
    return InMemorySpanExporter()


def _job(
    tmp_path: Path, spans: InMemorySpanExporter, now: datetime, **overrides: object
) -> DriftJob:
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(spans))
    settings = DriftSettings(window=WindowSettings(rows=2000), min_rows=500, **overrides)  # type: ignore[arg-type]
    return DriftJob(
        tmp_path / "store",
        settings,
        tmp_path / "models",
        provider.get_tracer("test"),
        clock=lambda: now,
    )


@pytest.fixture
def repository(tmp_path: Path) -> Iterator[Path]:
    models = tmp_path / "models"
    (models / "titanic" / "1").mkdir(parents=True)
    reference = _columns(5000, seed=0)
    reference["out_survived"] = (reference["in_fare"] > 40).astype(np.int64)
    ReferenceStore(models).save(build_profile("titanic", "1", reference, "test"))
    yield models


def test_a_window_like_the_reference_flags_nothing(
    tmp_path: Path, repository: Path, spans: InMemorySpanExporter
) -> None:
    _write(tmp_path / "store", _columns(2000, seed=1), "1", START)
    summary = _job(tmp_path, spans, START + timedelta(minutes=5)).run()
    assert summary.startswith("1 of 1 model versions checked; drifted: none"), summary
    (entry,) = read_latest(tmp_path / "store", "drift").values()
    assert entry["window"]["rows"] == 2000
    assert {f["feature"] for f in entry["features"]} >= {"fare", "age", "sex", "survived"}


def test_a_shifted_feature_is_named_in_every_output(
    tmp_path: Path, repository: Path, spans: InMemorySpanExporter
) -> None:
    store = tmp_path / "store"
    _write(store, _columns(2000, seed=2, fare_shift=25.0), "1", START)
    summary = _job(tmp_path, spans, START + timedelta(minutes=5)).run()
    assert "titanic/1:fare" in summary, summary

    rows = run_sql(
        store,
        "select feature, statistic, drifted, window_rows, report, sql from drift_results "
        "where model = 'titanic' and version = '1' order by feature",
    ).rows
    by_feature = {row[0]: row for row in rows}
    assert by_feature["fare"][2] is True and by_feature["age"][2] is False
    assert by_feature["fare"][3] == 2000
    report = by_feature["fare"][4]
    assert report.startswith("/reports/drift/titanic/1/")
    assert (store / report.removeprefix("/")).is_file()
    # The stored SQL reproduces the window's counts.
    assert run_sql(store, by_feature["fare"][5]).rows

    (check,) = [s for s in spans.get_finished_spans() if s.name == "drift check"]
    events = {e.attributes["driftgate.feature"]: e.attributes for e in check.events if e.attributes}
    assert events["fare"]["driftgate.drift.drifted"] is True


def test_the_window_is_the_latest_rows(
    tmp_path: Path, repository: Path, spans: InMemorySpanExporter
) -> None:
    store = tmp_path / "store"
    _write(store, _columns(2000, seed=3, fare_shift=25.0), "1", START)
    _write(store, _columns(2000, seed=4), "1", START + timedelta(minutes=1))
    summary = _job(tmp_path, spans, START + timedelta(minutes=5)).run()
    assert summary.endswith("drifted: none"), summary  # the shifted rows are older


def test_too_few_rows_give_no_verdict(
    tmp_path: Path, repository: Path, spans: InMemorySpanExporter
) -> None:
    _write(tmp_path / "store", _columns(100, seed=5), "1", START)
    summary = _job(tmp_path, spans, START + timedelta(minutes=5)).run()
    assert summary.startswith("0 of 1 model versions checked"), summary
    assert read_latest(tmp_path / "store", "drift") == {}


def test_a_version_without_reference_gets_one_from_its_first_rows(
    tmp_path: Path, repository: Path, spans: InMemorySpanExporter
) -> None:
    store = tmp_path / "store"
    (tmp_path / "models" / "titanic" / "2").mkdir()
    _write(store, _columns(1000, seed=6), "2", START)
    _write(store, _columns(1000, seed=7, fare_shift=25.0), "2", START + timedelta(minutes=1))
    job = _job(tmp_path, spans, START + timedelta(minutes=5), auto_reference_rows=1000)
    job.settings = DriftSettings(window=WindowSettings(rows=1000), min_rows=500)
    summary = job.run()
    assert ReferenceStore(tmp_path / "models").history("titanic", "2"), "no profile saved"
    assert "titanic/2:fare" in summary, summary


def _damage_profile(models: Path, version: str) -> None:
    store = ReferenceStore(models)
    store.save(build_profile("titanic", version, _columns(1000, seed=8), "test"))
    (name,) = store.history("titanic", version)
    (store.folder("titanic", version) / name).write_text("{not json")


def test_a_version_that_fails_does_not_stop_the_others(
    tmp_path: Path, repository: Path, spans: InMemorySpanExporter
) -> None:
    _damage_profile(repository, "2")
    _write(tmp_path / "store", _columns(2000, seed=9, fare_shift=25.0), "1", START)
    _write(tmp_path / "store", _columns(2000, seed=10), "2", START)

    summary = _job(tmp_path, spans, START + timedelta(minutes=5)).run()

    assert summary.startswith("1 of 2 model versions checked; drifted: titanic/1:fare"), summary
    assert "; failed: titanic/2 arm a (" in summary
    assert "not a readable reference profile" in summary


def test_a_run_fails_when_every_version_it_tried_failed(
    tmp_path: Path, repository: Path, spans: InMemorySpanExporter
) -> None:
    _damage_profile(repository, "2")
    _write(tmp_path / "store", _columns(2000, seed=10), "2", START)

    with pytest.raises(RuntimeError, match=r"every model version tried failed: titanic/2 arm a"):
        _job(tmp_path, spans, START + timedelta(minutes=5)).run()


def test_the_jobs_metrics_name_the_version_a_successful_run_could_not_check(
    tmp_path: Path, repository: Path
) -> None:
    """A run that checked some versions counts as a good run, so on-call would not see that
    one version's drift is no longer computed: ``driftgate_drift_check_failing`` on the
    jobs process's /metrics says which (alert DriftgateDriftCheckFailing)."""
    _damage_profile(repository, "2")
    store, now = tmp_path / "store", datetime.now(UTC)
    _write(store, _columns(2000, seed=9), "1", now - timedelta(minutes=5))
    _write(store, _columns(2000, seed=10), "2", now - timedelta(minutes=5))
    config = tmp_path / "gateway.yaml"
    config.write_text(
        "auth: {enabled: false}\nlog: {store: store}\n"
        "drift: {window: {rows: 2000}, min_rows: 500}\n"
    )
    process = build_jobs(config, only=["drift"])
    (job,) = process.scheduler.jobs

    def failing(version: str) -> float | None:
        labels = {"model": "titanic", "version": version, "arm": "a"}
        return process.registry.get_sample_value("driftgate_drift_check_failing", labels)

    assert process.scheduler.run_once(job)
    assert (failing("1"), failing("2")) == (0.0, 1.0)
    assert process.registry.get_sample_value(
        "driftgate_job_runs_total", {"job": "drift", "outcome": "ok"}
    )

    ReferenceStore(repository).save(build_profile("titanic", "2", _columns(2000, 11), "test"))
    assert process.scheduler.run_once(job)
    assert (failing("1"), failing("2")) == (0.0, 0.0)


def test_a_model_logging_only_lists_is_skipped_not_failed(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The demo's iris logs a list of 4 floats in and a list of 3 out. Its reference from
    the log took every model's columns of the view, titanic's all NULL in iris's rows, and
    failed naming them: once iris alone had recent traffic every run failed."""
    store, now = tmp_path / "store", datetime.now(UTC)
    (tmp_path / "models").mkdir()
    _write(store, _columns(600, seed=12), "1", now - timedelta(days=3))  # not recent
    _write_iris(store, 600, now - timedelta(minutes=5))
    config = tmp_path / "gateway.yaml"
    config.write_text(
        "auth: {enabled: false}\nlog: {store: store}\n"
        "drift: {window: {rows: 500}, min_rows: 100, auto_reference_rows: 200}\n"
    )
    process = build_jobs(config, only=["drift"])
    (job,) = process.scheduler.jobs

    with caplog.at_level(logging.INFO, logger="driftgate.drift"):
        assert process.scheduler.run_once(job)

    def runs(outcome: str) -> float | None:
        labels = {"job": "drift", "outcome": outcome}
        return process.registry.get_sample_value("driftgate_job_runs_total", labels)

    assert (runs("ok"), runs("error")) == (1.0, None)
    failing = {"model": "iris", "version": "1", "arm": "a"}
    assert process.registry.get_sample_value("driftgate_drift_check_failing", failing) == 0.0
    skipped = [r.getMessage() for r in caplog.records if r.getMessage().startswith("skipped")]
    assert skipped == [
        "skipped iris/1 arm a: nothing to test (its values are all in list columns, which "
        "drift does not test: in_features, out_probabilities)"
    ]
    assert skipped[0] in (Path(__file__).parents[2] / "docs" / "drift.md").read_text()
    assert not ReferenceStore(tmp_path / "models").history("iris", "1")


def _write_iris(store: Path, rows: int, start: datetime) -> None:
    """Rows of the demo's iris: a list of 4 floats in, a list of 3 probabilities out."""
    rng = np.random.default_rng(13)
    writer = PredictionLogWriter(store, LogSettings(store=str(store)), CollectorRegistry())
    writer.start()
    writer.submit(
        [
            PredictionRecord(
                request_id=f"iris-{i}",
                row=0,
                timestamp=start + timedelta(milliseconds=i),
                route="iris",
                arm="a",
                role="primary",
                model="iris",
                version="1",
                replica="http://127.0.0.1:8001",
                dialect="v2",
                status=200,
                latency_s=0.003,
                trace_id=None,
                inputs={"features": [float(v) for v in rng.normal(5.0, 1.0, 4)]},
                outputs={"probabilities": [0.2, 0.3, 0.5]},
            )
            for i in range(rows)
        ]
    )
    writer.close()


def test_settings_name_the_wrong_key() -> None:
    assert parse_drift_section(None) == DriftSettings()
    with pytest.raises(ValueError, match="alpah"):
        parse_drift_section({"alpah": 0.1})
    with pytest.raises(ValueError, match="exactly one of rows or last_s"):
        parse_drift_section({"window": {"rows": 10, "last_s": 60}})
    with pytest.raises(ValueError, match="numeric"):
        parse_drift_section({"statistics": {"numeric": "t_test"}})


def test_the_jobs_process_needs_a_log(tmp_path: Path) -> None:
    config = tmp_path / "gateway.yaml"
    config.write_text("auth: {enabled: false}\ndrift: {interval_s: 5}\n")
    with pytest.raises(JobsConfigError, match="no `log:` section"):
        build_jobs(config)
    config.write_text("auth: {enabled: false}\nlog: {store: store}\ndrift: {window: {}}\n")
    with pytest.raises(JobsConfigError, match="drift"):
        build_jobs(config)
    config.write_text("auth: {enabled: false}\nlog: {store: store}\n")
    assert "drift" in build_jobs(config, log_upkeep=True).names


def test_a_feature_arriving_empty_is_named_by_its_missing_test(
    tmp_path: Path, repository: Path, spans: InMemorySpanExporter
) -> None:
    columns = _columns(2000, seed=8)
    columns["in_age"][np.random.default_rng(9).random(2000) < 0.4] = np.nan
    _write(tmp_path / "store", columns, "1", START)
    summary = _job(tmp_path, spans, START + timedelta(minutes=5)).run()
    assert "titanic/1:age:missing" in summary, summary
    assert "titanic/1:age," not in summary + ","  # the values themselves did not move


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

    _write(store, _columns(2000, seed=3, fare_shift=25.0), "1", now - timedelta(minutes=5))
    receiver.failing = True
    once()
    receiver.failing = False
    once()
    fired = receiver.alerts()
    assert ("firing", "fare") in fired
    assert {status for status, _ in fired} == {"firing"}
    once()  # still drifted, and the receiver has it: nothing to send
    assert receiver.alerts() == fired

    _write(store, _columns(2000, seed=4), "1", now - timedelta(minutes=1))  # back to normal
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
    _write(store, _columns(2000, seed=3, fare_shift=25.0), "1", START)
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
    _write(store, _columns(2000, seed=5, fare_shift=25.0), "1", START + timedelta(hours=3))
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
    _write(store, _columns(2000, seed=3, fare_shift=25.0), "1", datetime.now(UTC))
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

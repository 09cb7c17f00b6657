"""The writer: batches on disk by size or interval, never blocks, survives a failing disk."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from gateway.log_settings import parse_log_section
from monitoring.prediction_log import LogSettings, PredictionLogWriter, PredictionRecord
from monitoring.prediction_log.segments import predictions_table
from tests.monitoring.builders import (
    block_partition,
    label,
    log_records,
    prediction,
    predictions,
    query,
    sample,
)


def segments(store: Path, table: str = "predictions") -> list[Path]:
    return [p for p in (store / table).rglob("*.parquet") if not p.name.startswith("_")]


def test_flush_puts_every_submitted_record_on_disk_and_in_the_views(
    writer: PredictionLogWriter, store: Path, registry: CollectorRegistry
) -> None:
    assert writer.submit(predictions(3))
    assert writer.submit([label("req-1", None, 1)])
    writer.flush()
    assert query(store, "SELECT count(*) FROM predictions") == [(3,)]
    assert query(store, "SELECT request_id, label FROM feedback") == [("req-1", 1)]
    assert log_records(registry, "predictions", "written") == 3
    assert sample(registry, "driftgate_log_segments_total", table="feedback") == 1
    assert sample(registry, "driftgate_log_queue_depth") == 0
    assert sample(registry, "driftgate_log_flush_duration_seconds_count") >= 1


def test_one_segment_per_model_and_utc_date_in_hive_folders(
    writer: PredictionLogWriter, store: Path
) -> None:
    writer.submit([prediction("a"), prediction("b", model="digits/v2 beta")])
    writer.flush()
    folders = sorted(str(p.parent.relative_to(store)) for p in segments(store))
    assert folders == [
        "predictions/model=digits%2Fv2%20beta/date=2025-03-14",
        "predictions/model=titanic/date=2025-03-14",
    ]
    assert query(store, "SELECT DISTINCT model FROM predictions ORDER BY 1") == [
        ("digits/v2 beta",),
        ("titanic",),
    ]


def test_the_interval_flushes_without_being_asked(store: Path) -> None:
    writer = PredictionLogWriter(store, LogSettings(flush_interval_s=0.2, flush_rows=10**6))
    writer.start()
    try:
        writer.submit(predictions(5))
        deadline = time.monotonic() + 5
        while not segments(store) and time.monotonic() < deadline:
            time.sleep(0.02)
        assert segments(store), "nothing written within 5 s of a 0.2 s interval"
    finally:
        writer.close()


def test_reaching_flush_rows_flushes_before_the_interval(store: Path) -> None:
    writer = PredictionLogWriter(store, LogSettings(flush_interval_s=60, flush_rows=100))
    writer.start()
    try:
        writer.submit(predictions(100))
        deadline = time.monotonic() + 5
        while not segments(store) and time.monotonic() < deadline:
            time.sleep(0.02)
        assert segments(store), "100 rows with flush_rows=100 did not flush"
    finally:
        writer.close()


def test_a_full_queue_drops_at_once_and_counts(
    store: Path, registry: CollectorRegistry, caplog: pytest.LogCaptureFixture
) -> None:
    settings = LogSettings(max_queue=10, flush_interval_s=60, flush_rows=1000)
    writer = PredictionLogWriter(store, settings, registry)  # not started: nothing drains
    assert writer.submit(predictions(8))
    started = time.perf_counter()
    assert not writer.submit(predictions(3, prefix="late"))
    assert not writer.submit([label(f"x{n}", 0, 1) for n in range(3)])
    assert time.perf_counter() - started < 0.05
    assert log_records(registry, "predictions", "dropped", "queue_full") == 3
    assert log_records(registry, "feedback", "dropped", "queue_full") == 3
    assert sample(registry, "driftgate_log_queue_depth") == 8
    # Logged, but not once per request: the first drop of a minute says what happened.
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert len(warnings) == 1, warnings
    assert "dropped 3 records" in warnings[0] and "max_queued_rows 10" in warnings[0]
    writer.close()  # a writer that never started still writes what it accepted
    assert query(store, "SELECT count(*) FROM predictions") == [(8,)]


def test_log_max_queued_rows_sizes_the_writers_queue(
    store: Path, registry: CollectorRegistry, caplog: pytest.LogCaptureFixture
) -> None:
    """gateway.yaml's ``log.max_queued_rows`` reaches the writer (``log.max_queue`` sizes
    the recorder's queue in front of it), and a full queue of that size drops and counts as
    one of the default 100,000 rows does."""
    section = {"store": str(store), "max_queue": 7, "max_queued_rows": 4, "flush_interval_s": 60}
    recording = parse_log_section(section, store.parent)
    assert recording is not None
    assert (recording.max_queue, recording.writer.max_queue) == (7, 4)
    writer = PredictionLogWriter(recording.store, recording.writer, registry)  # nothing drains
    assert writer.submit(predictions(3))
    assert not writer.submit(predictions(2, prefix="late"))  # 5 > 4: the whole batch goes
    assert writer.submit(predictions(1, prefix="fits"))
    assert not writer.submit([label("x", 0, 1)])
    assert log_records(registry, "predictions", "dropped", "queue_full") == 2
    assert log_records(registry, "feedback", "dropped", "queue_full") == 1
    assert sample(registry, "driftgate_log_queue_depth") == 4
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert len(warnings) == 1 and "max_queued_rows 4" in warnings[0], warnings
    writer.close()
    assert query(store, "SELECT count(*) FROM predictions") == [(4,)]


def test_the_writers_queue_holds_100_000_rows_unless_configured(store: Path) -> None:
    recording = parse_log_section({"store": str(store)}, store.parent)
    assert recording is not None and recording.writer.max_queue == 100_000


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (0, "log: prediction log setting max_queued_rows must be a positive finite number, got 0"),
        (-5, "log: prediction log setting max_queued_rows must be a positive finite number"),
        (True, "log: Expected `int`, got `bool` - at `$.max_queued_rows`"),
        (2.5, "log: Expected `int`, got `float` - at `$.max_queued_rows`"),
    ],
)
def test_log_max_queued_rows_must_be_a_positive_whole_number(
    store: Path, value: object, message: str
) -> None:
    with pytest.raises(ValueError) as refused:
        parse_log_section({"store": str(store), "max_queued_rows": value}, store.parent)
    assert str(refused.value).startswith(message)


def test_close_writes_everything_and_later_submits_are_dropped(
    store: Path, registry: CollectorRegistry
) -> None:
    settings = LogSettings(flush_interval_s=60, flush_rows=10**6)
    writer = PredictionLogWriter(store, settings, registry)
    writer.start()
    for n in range(50):
        writer.submit(predictions(20, prefix=f"batch{n}"))
    writer.close()
    assert query(store, "SELECT count(*), count(DISTINCT request_id) FROM predictions") == [
        (1000, 1000)
    ]
    assert not writer.submit(predictions(1))
    assert log_records(registry, "predictions", "dropped", "closed") == 1
    assert log_records(registry, "predictions", "written") == 1000


def test_a_failing_write_is_retried_and_then_succeeds(
    writer: PredictionLogWriter, store: Path, registry: CollectorRegistry
) -> None:
    blocker = block_partition(store)
    writer.submit(predictions(4))
    deadline = time.monotonic() + 5
    while sample(registry, "driftgate_log_write_errors_total") == 0:
        assert time.monotonic() < deadline, "the blocked write never failed"
        time.sleep(0.01)
    blocker.unlink()  # the disk "recovers" before the retries run out
    writer.flush()
    assert query(store, "SELECT count(*) FROM predictions") == [(4,)]
    assert sample(registry, "driftgate_log_write_errors_total") >= 1


def test_a_write_failing_every_retry_drops_and_counts_and_the_thread_lives_on(
    writer: PredictionLogWriter, store: Path, registry: CollectorRegistry
) -> None:
    block_partition(store)
    writer.submit(predictions(4))
    writer.flush()
    assert log_records(registry, "predictions", "dropped", "write_failed") == 4
    assert sample(registry, "driftgate_log_write_errors_total") == 3  # 3 attempts in all
    writer.submit(predictions(2, model="digits"))
    writer.flush()
    assert query(store, "SELECT model, count(*) FROM predictions GROUP BY model") == [("digits", 2)]
    assert not list((store / ".staging").glob("*.tmp"))


def test_a_store_refusing_every_write_logs_its_error_in_full_once(
    writer: PredictionLogWriter,
    store: Path,
    registry: CollectorRegistry,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Every failed attempt logged its traceback: a read-only store under traffic wrote
    about 48,000 log lines in 10 minutes. The metrics still count every attempt."""
    block_partition(store)
    with caplog.at_level(logging.ERROR, logger="monitoring.prediction_log.writer"):
        for _ in range(3):
            writer.submit(predictions(4))
            writer.flush()

    assert sample(registry, "driftgate_log_write_errors_total") == 9
    assert log_records(registry, "predictions", "dropped", "write_failed") == 12
    tracebacks = [r for r in caplog.records if r.exc_info]
    assert len(tracebacks) == 1 and "attempt 1 of 3" in tracebacks[0].getMessage()
    assert len(caplog.records) == 2  # that one, and the first "dropped ... records" line


def test_an_unusable_record_is_dropped_alone(
    writer: PredictionLogWriter, store: Path, registry: CollectorRegistry
) -> None:
    broken = prediction("broken", timestamp=None)
    writer.submit([prediction("a"), broken, prediction("b")])
    writer.flush()
    assert query(store, "SELECT request_id FROM predictions ORDER BY 1") == [("a",), ("b",)]
    assert log_records(registry, "predictions", "dropped", "unconvertible") == 1
    writer.submit([prediction("c")])
    writer.flush()
    assert query(store, "SELECT count(*) FROM predictions") == [(3,)]


def test_a_record_that_cannot_be_converted_is_dropped_alone(
    writer: PredictionLogWriter, store: Path, registry: CollectorRegistry
) -> None:
    """A feedback row past int32 made the group's table fail: every retry failed, and the
    other clients' labels of the same flush were dropped with it."""
    writer.submit([label("a", None, 1), label("poison", 2**31, 1), label("b", 0, 0)])
    writer.flush()
    assert query(store, "SELECT request_id FROM feedback ORDER BY 1") == [("a",), ("b",)]
    assert log_records(registry, "feedback", "dropped", "unconvertible") == 1
    assert sample(registry, "driftgate_log_write_errors_total") == 0


def test_a_flush_failing_outside_the_retried_write_counts_its_records_as_dropped(
    writer: PredictionLogWriter,
    store: Path,
    registry: CollectorRegistry,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A bug while building one model's segment lost the whole flush, other models'
    records included, and counted none of it as dropped: only the error counter rose, and
    DriftgatePredictionLogDropping (which reads the dropped count) never fired."""

    def buggy(records: Sequence[PredictionRecord]) -> object:
        if len(records) > 1 and records[0].model == "broken":
            raise RuntimeError("a bug in the segment builder")
        return predictions_table(records)

    monkeypatch.setattr("monitoring.prediction_log.segment_writer.predictions_table", buggy)
    writer.submit([*predictions(3, model="broken"), *predictions(2, prefix="fine")])
    writer.flush()
    assert query(store, "SELECT model, count(*) FROM predictions GROUP BY ALL") == [("titanic", 2)]
    assert log_records(registry, "predictions", "dropped", "flush_failed") == 3
    assert log_records(registry, "predictions", "written") == 2
    assert sample(registry, "driftgate_log_write_errors_total") == 1
    assert sample(registry, "driftgate_log_queue_depth") == 0


class _EndsTheThread:
    """A timestamp whose first use raises SystemExit, which ends a thread without a word
    (``threading.excepthook`` ignores it): the hardest way for the writer thread to die."""

    @property
    def tzinfo(self) -> None:
        raise SystemExit(1)


def test_the_writer_thread_outlives_an_error_that_would_end_it(
    writer: PredictionLogWriter, store: Path, registry: CollectorRegistry
) -> None:
    """The thread died and the writer went on accepting records that nobody wrote, until
    the queue filled up and every later record was dropped as if the disk were slow."""
    writer.submit([prediction("doomed", timestamp=_EndsTheThread())])
    deadline = time.monotonic() + 5
    while writer.queue_depth:
        assert time.monotonic() < deadline, "the doomed record was never taken"
        time.sleep(0.01)
    assert log_records(registry, "predictions", "dropped", "flush_failed") == 1
    writer.submit(predictions(2))  # written by the thread on its interval: no flush()
    deadline = time.monotonic() + 5
    # The count follows the segment's rename into place: wait for the count, not the file.
    while log_records(registry, "predictions", "written") < 2:
        assert time.monotonic() < deadline, "nothing written after the error: the thread died"
        time.sleep(0.02)
    assert log_records(registry, "predictions", "written") == 2
    assert segments(store)


def writer_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "prediction-log-writer"]


def test_a_close_that_times_out_counts_what_it_did_not_write(
    store: Path, registry: CollectorRegistry, caplog: pytest.LogCaptureFixture
) -> None:
    """SIGTERM with a disk that stalls: close() gave up after its timeout and the process
    exited with records in memory, logged but never counted as dropped."""
    before = set(writer_threads())
    writer = PredictionLogWriter(store, LogSettings(flush_interval_s=0.05), registry)
    writer.start()
    block_partition(store)  # each attempt fails, with back-off between attempts
    writer.submit(predictions(4))
    writer.close(timeout_s=0.01)
    assert log_records(registry, "predictions", "dropped", "shutdown") == 4
    assert sample(registry, "driftgate_log_queue_depth") == 0
    assert any("4 records" in r.getMessage() for r in caplog.records if r.levelname == "ERROR")
    deadline = time.monotonic() + 5
    while set(writer_threads()) - before:  # the abandoned write stops retrying
        assert time.monotonic() < deadline, "the writer thread went on after close gave up"
        time.sleep(0.01)
    assert log_records(registry, "predictions", "dropped") == 4  # not counted twice


def test_flush_times_out_rather_than_hanging(store: Path) -> None:
    writer = PredictionLogWriter(store, LogSettings(flush_interval_s=0.05))
    writer.start()
    block_partition(store)  # each attempt fails, with back-off between attempts
    writer.submit(predictions(1))
    with pytest.raises(TimeoutError, match="did not finish"):
        writer.flush(timeout_s=0.01)
    writer.close()


def test_settings_reject_nonsense() -> None:
    with pytest.raises(ValueError, match="flush_rows"):
        LogSettings(flush_rows=0)

"""Compaction merges small segments without changing what queries see; retention deletes
by age, then by size; both skip when another run holds the store's lock."""

from __future__ import annotations

import json
import time
from datetime import timedelta
from pathlib import Path

import duckdb
import pyarrow as pa  # type: ignore[import-untyped]
import pyarrow.parquet as pq  # type: ignore[import-untyped]
from opentelemetry.trace import NoOpTracer
from prometheus_client import CollectorRegistry

from monitoring.jobs import JobScheduler
from monitoring.log_jobs import schedule_log_upkeep
from monitoring.prediction_log import (
    LogSettings,
    PredictionLogWriter,
    compact,
    enforce_retention,
)
from monitoring.prediction_log.layout import segment_name, store_lock
from monitoring.prediction_log.maintenance import MAINTENANCE_LOCK
from monitoring.prediction_log.shape_registry import ShapeRegistry
from tests.monitoring.builders import (
    NOW,
    fits,
    label,
    prediction,
    predictions,
    query,
    segment_shapes,
)


def data_segments(store: Path) -> list[Path]:
    return sorted(
        p for p in store.rglob("*.parquet") if ".staging" not in p.parts and p.name[0] != "_"
    )


def write_in_flushes(writer: PredictionLogWriter, flushes: int, **fields: object) -> None:
    """One segment per flush, each a different schema version of the model."""
    for n in range(flushes):
        inputs = {"age": n, "fare": 7.5} if n % 2 else {"age": n + 0.5, "cabin": f"C{n}"}
        writer.submit(predictions(3, prefix=f"f{n}", inputs=inputs, **fields))
        writer.flush()


SNAPSHOT = """SELECT request_id, model, date, in_age, in_fare, in_cabin, out_probability
FROM predictions ORDER BY model, request_id"""


def test_compaction_merges_a_partition_into_one_segment_and_changes_no_answer(
    writer: PredictionLogWriter, store: Path
) -> None:
    write_in_flushes(writer, 8)
    write_in_flushes(writer, 2, model="digits")  # below compact_min_files: left alone
    before = query(store, SNAPSHOT)
    report = compact(store, LogSettings(compact_min_files=8))
    assert [(p.partition, p.segments, p.rows) for p in report.compacted] == [
        ("predictions/model=titanic/date=2025-03-14", 8, 24)
    ]
    assert report.segments_removed == 7
    assert str(report) == "compacted 1 partitions (8 segments into 1), 0 failed"
    assert report.failed == ()
    assert query(store, SNAPSHOT) == before
    folders = [p.parent.name + "/" + p.parent.parent.name for p in data_segments(store)]
    assert sorted(folders) == ["date=2025-03-14/model=digits"] * 2 + [
        "date=2025-03-14/model=titanic"
    ]
    assert not list((store / ".staging").glob("compaction-*.json"))


def test_the_writer_keeps_adding_segments_next_to_a_compacted_one(
    writer: PredictionLogWriter, store: Path
) -> None:
    write_in_flushes(writer, 3)
    compact(store, LogSettings(compact_min_files=2))
    writer.submit([prediction("after", inputs={"age": 1, "new_feature": True})])
    writer.flush()
    assert query(store, "SELECT count(*), count(in_new_feature) FROM predictions") == [(10, 1)]
    assert len(data_segments(store)) == 2


def test_compaction_keeps_every_column_in_its_registered_shape(
    writer: PredictionLogWriter, store: Path
) -> None:
    # All-null columns stay null-typed in the merged file: the registry's "fits any
    # shape" for them stays true, and a list logged later still reads with them.
    for n in range(3):
        writer.submit(
            predictions(2, prefix=f"f{n}", inputs={"age": n, "dose": None, "ids": [None]})
        )
        writer.flush()
    compact(store, LogSettings(compact_min_files=3))
    assert len(data_segments(store)) == 1
    writer.submit([prediction("later", inputs={"dose": [1.5], "ids": [[1]]})])
    writer.flush()
    shapes = ShapeRegistry(store).load()
    assert shapes["in_dose"] == (1, False) and shapes["in_ids"] == (2, False)
    for name, found in segment_shapes(store).items():
        assert all(fits(shape, shapes[name]) for shape in found), (name, found)
    assert query(store, "SELECT in_dose, in_ids FROM predictions WHERE request_id = 'later'") == [
        ([1.5], [[1]])
    ]


def test_feedback_partitions_are_compacted_too(writer: PredictionLogWriter, store: Path) -> None:
    for n in range(3):
        writer.submit([label(f"r{n}", None, n)])
        writer.flush()
    report = compact(store, LogSettings(compact_min_files=3))
    assert [p.partition for p in report.compacted] == ["feedback/date=2025-03-14"]
    assert query(store, "SELECT count(*) FROM feedback") == [(3,)]


def test_a_partition_that_cannot_be_merged_is_reported_and_left_as_it_is(store: Path) -> None:
    # Segments written by something other than the writer, with clashing column shapes.
    folder = store / "predictions" / "model=other" / "date=2025-03-14"
    folder.mkdir(parents=True)
    pq.write_table(pa.table({"timestamp": [NOW], "in_x": [1]}), folder / "a.parquet")
    pq.write_table(pa.table({"timestamp": [NOW], "in_x": [[1]]}), folder / "b.parquet")
    report = compact(store, LogSettings(compact_min_files=2))
    assert report.compacted == ()
    assert [f.split(":")[0] for f in report.failed] == ["predictions/model=other/date=2025-03-14"]
    assert sorted(p.name for p in folder.iterdir()) == ["a.parquet", "b.parquet"]
    assert not list((store / ".staging").glob("*.tmp"))


def test_an_interrupted_swap_is_finished_by_the_next_run(
    writer: PredictionLogWriter, store: Path
) -> None:
    write_in_flushes(writer, 2)
    old = data_segments(store)
    # Simulate a compaction killed after renaming its merged file in: copy one old segment
    # as "merged" and journal that it replaces both.
    merged = old[0].with_name("20250314T000000.000000Z-merged.parquet")
    merged.write_bytes(old[0].read_bytes())
    journal = {
        "merged": str(merged.relative_to(store)),
        "staged": str(store / ".staging" / "gone.parquet.tmp"),
        "replaces": [str(p.relative_to(store)) for p in old],
    }
    (store / ".staging" / "compaction-test.json").write_text(json.dumps(journal))
    report = compact(store, LogSettings())
    assert report.recovered == 1
    assert data_segments(store) == [merged]


def test_a_torn_journal_is_set_aside_and_compaction_goes_on(
    writer: PredictionLogWriter, store: Path
) -> None:
    """It failed every later compaction and retention run: the store grew without bound."""
    write_in_flushes(writer, 8)
    torn = store / ".staging" / "compaction-torn.json"
    torn.write_text('{"merged": "predictions/mo')
    report = compact(store, LogSettings())
    assert report.recovered == 0 and len(report.compacted) == 1
    assert not torn.exists()
    assert torn.with_name("compaction-torn.json.unreadable").is_file()


def test_a_second_run_skips_while_the_lock_is_held(store: Path) -> None:
    store.mkdir(parents=True)
    with store_lock(store, MAINTENANCE_LOCK, wait=False) as held:
        assert held
        assert compact(store, LogSettings()).skipped
        assert enforce_retention(store, LogSettings()).skipped
    assert compact(store, LogSettings()).skipped is None


def test_retention_deletes_whole_days_older_than_max_age(
    writer: PredictionLogWriter, store: Path
) -> None:
    for days_ago in (0, 1, 2, 10):
        writer.submit(predictions(2, prefix=f"d{days_ago}", timestamp=NOW - timedelta(days_ago)))
        writer.submit([label(f"d{days_ago}-0", None, 1, timestamp=NOW - timedelta(days_ago))])
    writer.flush()
    report = enforce_retention(store, LogSettings(max_age_days=1.5), now=NOW)
    assert sorted(report.expired_partitions) == [
        "feedback/date=2025-03-04",
        "feedback/date=2025-03-12",
        "predictions/model=titanic/date=2025-03-04",
        "predictions/model=titanic/date=2025-03-12",
    ]
    assert report.deleted_segments == 4
    assert str(report).startswith("retention deleted 4 segments (4 expired partitions")
    assert query(store, "SELECT DISTINCT date::VARCHAR FROM predictions ORDER BY 1") == [
        ("2025-03-13",),
        ("2025-03-14",),
    ]
    assert not (store / "predictions" / "model=titanic" / "date=2025-03-04").exists()


def test_retention_then_deletes_the_oldest_segments_until_the_store_fits(
    writer: PredictionLogWriter, store: Path
) -> None:
    for days_ago in (3, 2, 1, 0):
        writer.submit(predictions(50, prefix=f"d{days_ago}", timestamp=NOW - timedelta(days_ago)))
        writer.flush()
    sizes = [p.stat().st_size for p in data_segments(store)]
    budget = sum(sizes) - min(sizes)  # one segment too many
    report = enforce_retention(store, LogSettings(max_bytes=budget), now=NOW)
    assert report.expired_partitions == ()
    assert report.deleted_segments == 1
    assert report.bytes_remaining <= budget
    assert query(store, "SELECT min(date)::VARCHAR FROM predictions") == [("2025-03-12",)]


def test_an_empty_store_stays_queryable_after_retention_removes_everything(
    writer: PredictionLogWriter, store: Path
) -> None:
    writer.submit(predictions(2))
    writer.flush()
    report = enforce_retention(store, LogSettings(max_age_days=1), now=NOW + timedelta(days=5))
    assert report.deleted_segments == 1
    assert query(store, "SELECT count(*) FROM predictions_labeled") == [(0,)]


def write_large_partitions(store: Path, models: int, segments: int, rows: int) -> None:
    """Partitions whose merge takes seconds: ``segments`` segments of ``rows`` rows each,
    in an order their merge has to sort."""
    con = duckdb.connect()
    for model in range(models):
        folder = store / "predictions" / f"model=m{model}" / "date=2025-03-14"
        folder.mkdir(parents=True)
        for n in range(segments):
            con.execute(
                f"""COPY (SELECT 'r{n}-' || i AS request_id, TIMESTAMPTZ '2025-03-14 00:00:00+00'
                             + to_microseconds((hash(i * {n + 1}) % 86400000000)::BIGINT)
                             AS "timestamp", random() AS in_age
                          FROM range({rows}) t(i))
                    TO '{folder / segment_name()}' (FORMAT parquet)"""
            )
    con.close()


def partition_files(store: Path) -> dict[str, list[str]]:
    return {
        folder.parent.name: sorted(p.name for p in folder.glob("*.parquet"))
        for folder in sorted((store / "predictions").glob("*/date=*"))
    }


def rows_by_model(store: Path) -> list[tuple[str, int]]:
    glob = store / "predictions" / "*" / "*" / "*.parquet"
    with duckdb.connect() as con:
        return con.execute(
            f"SELECT model, count(*) FROM read_parquet('{glob}', hive_partitioning = true) "
            "GROUP BY model ORDER BY model"
        ).fetchall()


def test_stopping_the_jobs_mid_compaction_returns_soon_and_leaves_the_store_whole(
    store: Path,
) -> None:
    """The upkeep job could not be stopped: a stop waited for the whole compaction, and a
    process killed meanwhile relied on the journal. Now the merge under way is interrupted
    (its segments stay as they were) and no other partition is started."""
    write_large_partitions(store, models=2, segments=8, rows=300_000)
    before_files, before_rows = partition_files(store), rows_by_model(store)
    registry = CollectorRegistry()
    jobs = JobScheduler(registry, NoOpTracer())
    schedule_log_upkeep(jobs, store, LogSettings(compact_min_files=8), interval_s=0.05)
    jobs.start()
    deadline = time.monotonic() + 10
    labels = {"job": "log_upkeep"}
    while not registry.get_sample_value("driftgate_job_last_start_timestamp_seconds", labels):
        assert time.monotonic() < deadline
        time.sleep(0.01)
    time.sleep(0.3)  # into the first partition's merge

    began = time.monotonic()
    jobs.stop()

    assert time.monotonic() - began < 3
    stopped = {**labels, "outcome": "stopped"}
    assert registry.get_sample_value("driftgate_job_runs_total", stopped) == 1
    assert (
        registry.get_sample_value("driftgate_job_runs_total", {**labels, "outcome": "ok"}) is None
    )
    after_files = partition_files(store)
    assert any(len(files) > 1 for files in after_files.values())  # left for the next run
    for model, files in after_files.items():  # each partition merged, or as it was
        assert len(files) == 1 or files == before_files[model]
    assert rows_by_model(store) == before_rows
    staging = store / ".staging"
    assert not list(staging.glob("*.tmp")) and not list(staging.glob("compaction-*.json"))

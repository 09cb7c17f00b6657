"""The catalog's views: valid on an empty store, tolerant of changing schemas, labelled."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

import duckdb
import pyarrow as pa  # type: ignore[import-untyped]
import pytest

from monitoring.prediction_log import (
    Catalog,
    CatalogBusy,
    LogSettings,
    PredictionLogWriter,
    PredictionRecord,
)
from monitoring.prediction_log.catalog import CATALOG_VERSION, connect_readonly
from monitoring.prediction_log.layout import (
    PLACEHOLDER_NAME,
    PREDICTIONS,
    partition_dir,
    segment_name,
    write_segment,
)
from monitoring.prediction_log.segments import PREDICTION_SCHEMA, predictions_table
from tests.monitoring.builders import NOW, label, prediction, predictions, query

VIEWS = ["drift_results", "explanations", "feedback", "predictions", "predictions_labeled"]


def test_every_view_answers_on_a_store_with_no_segment_yet(store: Path) -> None:
    Catalog(store).ensure()
    for view in VIEWS:
        assert query(store, f"SELECT count(*) FROM {view}") == [(0,)]
    columns = query(store, "SELECT column_name, column_type FROM (DESCRIBE predictions)")
    assert columns[:5] == [
        ("model", "VARCHAR"),
        ("date", "DATE"),
        ("timestamp", "TIMESTAMP WITH TIME ZONE"),
        ("request_id", "VARCHAR"),
        ("row", "INTEGER"),
    ]


def test_segments_with_extra_missing_and_retyped_columns_share_one_view(
    writer: PredictionLogWriter, store: Path
) -> None:
    writer.submit([prediction("v1", version="1", inputs={"age": 30, "fare": 7})])
    writer.flush()
    # Version 2 drops "fare", adds "cabin", and sends a float age.
    writer.submit([prediction("v2", version="2", inputs={"age": 30.5, "cabin": "C85"})])
    writer.flush()
    rows = query(store, "SELECT request_id, in_age, in_fare, in_cabin FROM predictions ORDER BY 1")
    assert rows == [("v1", 30.0, 7, None), ("v2", 30.5, None, "C85")]
    types = dict(query(store, "SELECT column_name, column_type FROM (DESCRIBE predictions)"))
    assert types["in_age"] == "DOUBLE"


def test_the_views_use_absolute_paths(writer: PredictionLogWriter, store: Path) -> None:
    writer.submit([prediction()])
    writer.flush()
    script = (
        "import duckdb, sys\n"
        "con = duckdb.connect(sys.argv[1], read_only=True)\n"
        "print(con.execute('SELECT count(*) FROM predictions').fetchall()[0][0])\n"
    )
    elsewhere = store.parent / "elsewhere"
    elsewhere.mkdir()
    done = subprocess.run(
        [sys.executable, "-c", script, str(store / "driftgate.duckdb")],
        cwd=elsewhere,
        capture_output=True,
        text=True,
        check=True,
    )
    assert done.stdout.strip() == "1"


def test_predictions_labeled_takes_the_latest_label_and_request_wide_labels_apply_to_all_rows(
    writer: PredictionLogWriter, store: Path
) -> None:
    later = NOW + timedelta(hours=1)
    writer.submit(
        [
            prediction("a", 0),
            prediction("a", 1),
            prediction("a", 1, role="shadow", version="2"),
            prediction("b", 0),
            prediction("c", 0),
        ]
    )
    writer.submit(
        [
            label("a", None, 1),  # every row of request a...
            label("a", 1, 0, timestamp=later),  # ...but row 1 was corrected later
            label("b", 0, 0),
            label("b", 0, 1, timestamp=later),  # the later label wins
        ]
    )
    writer.flush()
    rows = query(
        store,
        "SELECT request_id, row, role, label FROM predictions_labeled ORDER BY ALL",
    )
    assert rows == [
        ("a", 0, "primary", 1),
        ("a", 1, "primary", 0),
        ("a", 1, "shadow", 0),
        ("b", 0, "primary", 1),
        ("c", 0, "primary", None),
    ]


def _old_segment(store: Path, *records: PredictionRecord) -> None:
    """A predictions segment as a driftgate before the ``subject`` column wrote it."""
    table = predictions_table(list(records)).drop_columns(["subject"])
    folder = partition_dir(store, PREDICTIONS, records[0].model, NOW.date())
    write_segment(store, table, folder / segment_name())


def test_segments_without_the_subject_column_read_null_beside_newer_ones(
    writer: PredictionLogWriter, store: Path
) -> None:
    _old_segment(store, prediction("old"))
    writer.submit([prediction("new", subject="alice")])
    writer.submit([label("old", None, 1), label("new", None, 0)])
    writer.flush()
    assert query(store, "SELECT request_id, subject FROM predictions ORDER BY 1") == [
        ("new", "alice"),
        ("old", None),
    ]
    rows = query(
        store,
        "SELECT request_id, subject, label, label_subject FROM predictions_labeled ORDER BY 1",
    )
    assert rows == [("new", "alice", 0, "labeller"), ("old", None, 1, "labeller")]


def test_a_store_of_an_older_driftgate_has_the_subject_column_once_a_writer_starts(
    store: Path,
) -> None:
    """Before any newer segment, only the placeholder can give the view the column: an
    older one lacking it is replaced, and the old rows read NULL."""
    Catalog(store).ensure()
    older = pa.schema([f for f in PREDICTION_SCHEMA if f.name != "subject"])
    placeholder = partition_dir(store, PREDICTIONS, None, None) / PLACEHOLDER_NAME
    write_segment(store, older.empty_table(), placeholder)
    _old_segment(store, prediction("old"))
    assert "subject" not in dict(query(store, "SELECT column_name, 1 FROM (DESCRIBE predictions)"))

    writer = PredictionLogWriter(store, LogSettings(flush_interval_s=0.05))
    writer.start()
    writer.close()
    assert query(store, "SELECT request_id, subject FROM predictions") == [("old", None)]
    assert query(store, "SELECT subject, label FROM predictions_labeled") == [(None, None)]


def test_ensure_writes_the_catalog_only_when_needed(store: Path) -> None:
    catalog = Catalog(store)
    assert catalog.ensure() is True
    modified = catalog.path.stat().st_mtime_ns
    assert catalog.ensure() is False
    assert catalog.path.stat().st_mtime_ns == modified
    assert query(store, "SELECT version, root FROM driftgate_catalog") == [
        (CATALOG_VERSION, str(store.resolve()))
    ]


def test_a_moved_store_gets_its_catalog_rebuilt_on_connect(
    writer: PredictionLogWriter, store: Path
) -> None:
    writer.submit([prediction()])
    writer.close()
    moved = store.parent / "moved"
    store.rename(moved)
    assert query(moved, "SELECT count(*) FROM predictions") == [(1,)]
    assert query(moved, "SELECT root FROM driftgate_catalog") == [(str(moved.resolve()),)]


READER = """
import json, sys, time, duckdb
path, seconds = sys.argv[1], float(sys.argv[2])
con = duckdb.connect(path, read_only=True)
deadline = time.monotonic() + seconds
n = 0
while time.monotonic() < deadline:
    try:
        if n % 10 == 9:  # some analysts reconnect, some keep one connection
            con.close()
            con = duckdb.connect(path, read_only=True)
        count = con.execute("SELECT count(*) FROM predictions").fetchall()[0][0]
        print(json.dumps({"count": count}), flush=True)
    except Exception as exc:
        print(json.dumps({"error": repr(exc)}), flush=True)
    n += 1
    time.sleep(0.01)
"""


def test_another_process_queries_the_catalog_read_only_while_the_writer_writes(
    writer: PredictionLogWriter, store: Path
) -> None:
    writer.submit([prediction("first")])
    writer.flush()
    reader = subprocess.Popen(
        [sys.executable, "-c", READER, str(store / "driftgate.duckdb"), "3"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 2.5
        batch = 0
        while time.monotonic() < deadline:
            writer.submit([prediction(f"b{batch}-{n}") for n in range(50)])
            if batch == 20:
                writer.catalog.refresh()  # swapping the catalog under the reader is safe
            batch += 1
            time.sleep(0.02)
        writer.flush()
        out, err = reader.communicate(timeout=30)
    finally:
        reader.kill()
    lines = [json.loads(line) for line in out.splitlines()]
    assert reader.returncode == 0, err
    assert [line for line in lines if "error" in line] == []
    counts = [line["count"] for line in lines]
    assert len(counts) > 20
    assert counts == sorted(counts), "a reader saw rows disappear"
    assert counts[0] < counts[-1], "the reader never saw new segments"


HOLDER = """
import sys, time, duckdb
con = duckdb.connect(sys.argv[1])  # read-write: what `duckdb FILE` does without -readonly
print("holding", flush=True)
time.sleep(float(sys.argv[2]))
con.close()
"""


@pytest.mark.skipif(sys.platform != "linux", reason="file locks as on Linux")
def test_a_catalog_held_read_write_elsewhere_delays_the_catalog_not_the_data(
    store: Path,
) -> None:
    store.mkdir(parents=True)
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(store / "driftgate.duckdb"), "1.5"],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "holding"
        writer = PredictionLogWriter(store, LogSettings(flush_interval_s=0.05))
        started = time.monotonic()
        writer.start()
        assert time.monotonic() - started < 1, "start() waited for the catalog's lock"
        with pytest.raises(CatalogBusy, match="duckdb -readonly"):
            writer.catalog.is_current()
        writer.submit([prediction()])
        writer.flush()
        assert len(list((store / "predictions").glob("model=titanic/*/*.parquet"))) == 1
        holder.wait(timeout=30)
        deadline = time.monotonic() + 10
        while not writer.catalog.is_current():
            assert time.monotonic() < deadline, "the catalog was never created"
            time.sleep(0.1)
        writer.close()
    finally:
        holder.kill()
    assert query(store, "SELECT count(*) FROM predictions") == [(1,)]


def test_a_broken_catalog_file_is_rebuilt(store: Path) -> None:
    store.mkdir(parents=True)
    (store / "driftgate.duckdb").write_bytes(b"not a database")
    assert Catalog(store).ensure() is True
    with duckdb.connect(str(store / "driftgate.duckdb"), read_only=True) as con:
        assert con.execute("SELECT count(*) FROM predictions").fetchall() == [(0,)]


def test_an_analyst_connecting_to_a_broken_catalog_gets_it_rebuilt(
    writer: PredictionLogWriter, store: Path
) -> None:
    """``driftgate sql`` and the jobs opened the damaged file as it was, and failed."""
    writer.submit(predictions(2))
    writer.flush()
    (store / "driftgate.duckdb").write_bytes(os.urandom(5000))
    con = connect_readonly(store)
    try:
        assert con.execute("SELECT count(*) FROM predictions").fetchall() == [(2,)]
    finally:
        con.close()

"""Reading windows of a real store: the one-scan counts equal the numpy builders' counts on
the same rows (NULL, NaN, values exactly on bin edges, unknown categories included), and
the bounds, groups, samples and labelled errors pick exactly the window's rows."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pytest
from opentelemetry import trace
from prometheus_client import CollectorRegistry

from drift.distributions import categorical_counts, category_text, numeric_counts
from drift.findings import Window
from drift.profile import PerformanceReference, ReferenceProfile, build_profile
from drift.window import (
    groups,
    labelled_errors,
    sample_columns,
    scan_window,
    view_columns,
    window_bounds,
    window_sql,
)
from monitoring.jobs import JobScheduler
from monitoring.prediction_log import (
    FeedbackRecord,
    LogSettings,
    PredictionLogWriter,
    PredictionRecord,
    connect_readonly,
    run_sql,
)

END = datetime(2025, 3, 14, 12, 0, tzinfo=UTC)
HOUR = 3600.0
START = END - timedelta(seconds=HOUR)


@dataclass(frozen=True)
class Row:
    """What a test row was: enough to compute the expected counts with numpy."""

    request_id: str
    timestamp: datetime
    version: str
    arm: str
    status: int
    inputs: dict[str, Any]
    outputs: dict[str, Any]


def reference_profile() -> ReferenceProfile:
    rng = np.random.default_rng(0)
    rows = 1000
    return build_profile(
        "titanic",
        "1",
        {
            "in_fare": np.round(rng.gamma(2.0, 10.0, rows), 2),
            # Trained on fractional ages, served whole ones: an integer column binned
            # over fractional edges.
            "in_age": rng.uniform(0.0, 80.0, rows),
            "in_sex": rng.choice(["male", "female"], rows).astype(object),
            "in_alone": rng.random(rows) < 0.4,
            "in_pclass": rng.integers(1, 4, rows),
            "in_rating": rng.integers(1, 4, rows),
            "in_cabin": rng.choice(["A", "B", "C"], rows).astype(object),  # never logged
            "out_label": rng.integers(0, 2, rows),
            "out_probability": rng.random(rows),
        },
        "test",
    )


PROFILE = reference_profile()


def stable_rows(rng: np.random.Generator) -> list[Row]:
    """titanic v1 'stable': 150 rows inside the hour, some outside, one failed."""
    edges = list(PROFILE.feature("in_fare").distribution.edges)
    fares: list[Any] = [*edges, float("nan"), None, None, -5.0, 1e6]
    fares += [float(x) for x in np.round(rng.gamma(2.0, 12.0, 150 - len(fares)), 2)]
    rows = []
    for i, fare in enumerate(fares):
        # Newest first: the first row is exactly at END (inside), the others 20 s apart.
        timestamp = END - timedelta(seconds=20 * i)
        inputs = {
            "fare": fare,
            "age": int(rng.integers(0, 90)) if i % 17 else None,
            "sex": ["male", "female", "unknown", None][i % 4],
            "alone": None if i % 11 == 0 else bool(i % 3),
            "pclass": int(rng.integers(1, 5)),  # 4: a class the reference never had
            # Classes the log holds as floats (a DOUBLE column): 2.0 is the class "2".
            "rating": float("nan") if i % 13 == 0 else float(i % 3 + 1),
        }
        outputs = {"label": i % 2, "probability": round(float(rng.random()), 3)}
        rows.append(Row(f"s{i}", timestamp, "1", "stable", 200, inputs, outputs))
    outside = [END + timedelta(seconds=1), START, START - timedelta(seconds=30)]
    for j, timestamp in enumerate(outside):
        inputs = {"fare": 1.0, "age": 30, "sex": "male", "alone": True, "pclass": 1}
        rows.append(Row(f"o{j}", timestamp, "1", "stable", 200, inputs, {"label": 0}))
    failed = {"fare": 99.0, "age": 30, "sex": "male", "alone": True, "pclass": 1}
    rows.append(Row("failed", END - timedelta(seconds=5), "1", "stable", 500, failed, {}))
    return rows


def other_rows() -> list[Row]:
    inputs = {"fare": 3.0, "age": 20, "sex": "female", "alone": False, "pclass": 2}
    rows = [
        Row(f"c{i}", END - timedelta(seconds=60 * i), "1", "canary", 200, inputs, {"label": 1})
        for i in range(5)
    ]
    # Version 2 dropped the fare feature.
    without_fare = {k: v for k, v in inputs.items() if k != "fare"}
    rows += [
        Row(f"v{i}", END - timedelta(seconds=90 * i), "2", "stable", 200, without_fare, {})
        for i in range(7)
    ]
    return rows


def record(row: Row, model: str = "titanic") -> PredictionRecord:
    return PredictionRecord(
        request_id=row.request_id,
        row=0,
        timestamp=row.timestamp,
        route="titanic",
        arm=row.arm,
        role="primary",
        model=model,
        version=row.version,
        replica="r1",
        dialect="v2",
        status=row.status,
        latency_s=0.01,
        trace_id=None,
        inputs=row.inputs,
        outputs=row.outputs,
    )


@dataclass(frozen=True)
class Store:
    root: Path
    stable: list[Row]
    labels: dict[str, Any]


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Store:
    root = tmp_path_factory.mktemp("window") / "store"
    stable = stable_rows(np.random.default_rng(1))
    records: list[PredictionRecord | FeedbackRecord] = [record(r) for r in stable + other_rows()]
    old = Row("i0", END - timedelta(days=3), "1", "stable", 200, {"width": 1.5}, {})
    records.append(record(old, model="iris"))
    # Labels for every third stable row: a class, sent for the row or for the request.
    labels = {r.request_id: (i // 6) % 2 for i, r in enumerate(stable) if i % 3 == 0}
    records += [
        FeedbackRecord(request_id, 0 if n % 2 else None, label, END + timedelta(minutes=5))
        for n, (request_id, label) in enumerate(labels.items())
    ]
    writer = PredictionLogWriter(root, LogSettings())
    writer.start()
    writer.submit(records)
    writer.close()
    return Store(root, stable, labels)


@pytest.fixture
def con(store: Store) -> Iterator[duckdb.DuckDBPyConnection]:
    connection = connect_readonly(store.root)
    yield connection
    connection.close()


def in_window(rows: list[Row], window: Window) -> list[Row]:
    def inside(row: Row) -> bool:
        after = (
            row.timestamp >= window.start
            if window.kind == "count"
            else row.timestamp > window.start
        )
        return after and row.timestamp <= window.end and row.status < 400

    return [r for r in rows if inside(r)]


def expected(rows: list[Row], column: str) -> tuple[list[int], int]:
    """(counts, missing) of a column over ``rows`` by the numpy builders."""
    reference = PROFILE.feature(column).distribution
    name = column.removeprefix("in_").removeprefix("out_")
    values = [(r.inputs if column.startswith("in_") else r.outputs).get(name) for r in rows]
    if reference.kind == "numeric":
        numbers = np.array([np.nan if v is None else v for v in values], dtype=np.float64)
        return list(numeric_counts(numbers, reference.edges)), int(np.isnan(numbers).sum())
    present = [v for v in values if category_text(v) is not None]
    return list(categorical_counts(present, reference.categories)), len(values) - len(present)


def test_time_window_counts_equal_the_numpy_builders(store, con):
    window = window_bounds(con, "titanic", "1", "stable", end=END, last_s=HOUR)
    assert window is not None
    rows = in_window(store.stable, window)
    assert len(rows) == 150  # the one at START, after END, and the 500 are out
    assert (window.kind, window.start, window.end, window.rows) == ("time", START, END, 150)

    scan = scan_window(con, PROFILE, "titanic", "1", "stable", window)

    assert scan.rows == 150
    assert scan.window == window
    columns = ("in_fare", "in_age", "in_sex", "in_alone", "in_pclass", "in_rating", "out_label")
    for column in columns:
        current = scan.distributions[column]
        assert (list(current.counts), current.missing) == expected(rows, column), column
        assert current.edges == PROFILE.feature(column).distribution.edges
        assert current.categories == PROFILE.feature(column).distribution.categories
    fare = scan.distributions["in_fare"]
    assert fare.missing == 3  # NaN and two NULLs
    assert fare.counts[0] >= 2  # the first edge and -5 share the first bin: (-inf, e1]
    assert fare.counts[-1] >= 1  # 1e6 in the overflow bin
    sex = scan.distributions["in_sex"]
    assert int(sex.counts[sex.categories.index("__other__")]) == sum(
        1 for r in rows if r.inputs["sex"] == "unknown"
    )


def test_numbers_are_counted_alike_once_a_refused_request_made_their_column_text(tmp_path):
    """One 400 row with text in the rating column makes the column VARCHAR in the view for
    every model: the float ratings then read '2.0', which missed the category '2'."""
    stable = stable_rows(np.random.default_rng(1))
    refused = Row("bad", END - timedelta(seconds=7), "1", "stable", 400, {"rating": "first"}, {})
    writer = PredictionLogWriter(tmp_path / "store", LogSettings())
    writer.start()
    writer.submit([record(row) for row in stable])
    writer.submit([record(refused, model="iris")])
    writer.close()
    con = connect_readonly(tmp_path / "store")
    assert view_columns(con)["in_rating"] == "VARCHAR"
    window = window_bounds(con, "titanic", "1", "stable", end=END, last_s=HOUR)
    assert window is not None

    scan = scan_window(con, PROFILE, "titanic", "1", "stable", window)

    rating = scan.distributions["in_rating"]
    assert (list(rating.counts), rating.missing) == expected(in_window(stable, window), "in_rating")
    assert int(rating.counts[rating.categories.index("__other__")]) == 0
    con.close()


def test_the_sql_reproduces_the_numbers_in_driftgate_sql(store, con):
    window = window_bounds(con, "titanic", "1", "stable", end=END, last_s=HOUR)
    assert window is not None
    scan = scan_window(con, PROFILE, "titanic", "1", "stable", window)

    result = run_sql(store.root, scan.sql)  # what `driftgate sql` runs

    assert result.columns[:3] == ["rows", "in_fare bins", "in_fare missing"]
    row = dict(zip(result.columns, result.rows[0], strict=True))
    assert row["rows"] == scan.rows
    assert row["in_fare missing"] == scan.distributions["in_fare"].missing
    assert row["in_sex missing"] == scan.distributions["in_sex"].missing
    assert "'titanic'" in scan.sql and "status < 400" in scan.sql


def test_count_window_takes_the_newest_rows(store, con):
    window = window_bounds(con, "titanic", "1", "stable", end=END - timedelta(seconds=200), rows=40)
    assert window is not None
    assert (window.kind, window.rows) == ("count", 40)
    # Rows are 20 s apart from END backwards: rows 10..49 end at END - 200 s.
    assert window.start == END - timedelta(seconds=20 * 49)
    rows = in_window(store.stable, window)
    assert len(rows) == 40

    scan = scan_window(con, PROFILE, "titanic", "1", "stable", window)

    assert scan.rows == 40
    for column in ("in_fare", "in_sex", "in_pclass"):
        current = scan.distributions[column]
        assert (list(current.counts), current.missing) == expected(rows, column), column


def test_no_window_without_rows(con):
    assert window_bounds(con, "titanic", "9", "stable", end=END, last_s=HOUR) is None
    assert window_bounds(con, "titanic", "9", "stable", end=END, rows=10) is None
    assert window_bounds(con, "iris", "1", "stable", end=END, last_s=HOUR) is None
    with pytest.raises(ValueError, match="exactly one"):
        window_bounds(con, "titanic", "1", "stable", end=END, last_s=HOUR, rows=10)


def test_a_feature_the_version_lacks_counts_as_missing(con):
    window = window_bounds(con, "titanic", "2", "stable", end=END, last_s=HOUR)
    assert window is not None and window.rows == 7

    scan = scan_window(con, PROFILE, "titanic", "2", "stable", window)

    assert scan.rows == 7
    # in_fare exists in the view (version 1 has it) but is NULL for version 2; in_cabin
    # is in no segment at all: both are missing on every row rather than an error.
    for column in ("in_fare", "in_cabin"):
        assert scan.distributions[column].total == 0
        assert scan.distributions[column].missing == 7
    assert scan.distributions["in_sex"].total == 7
    assert "in_cabin" not in window_sql(PROFILE, "titanic", "2", "stable", window).split("WHERE")[1]


def test_groups_seen_since(con):
    assert groups(con, START) == [
        ("titanic", "1", "canary"),
        ("titanic", "1", "stable"),
        ("titanic", "2", "stable"),
    ]
    assert ("iris", "1", "stable") in groups(con, END - timedelta(days=4))
    assert groups(con, END + timedelta(seconds=2)) == []


def test_sample_columns_reads_the_windows_inputs(store, con):
    window = window_bounds(con, "titanic", "1", "stable", end=END, last_s=HOUR)
    assert window is not None
    rows = in_window(store.stable, window)

    everything = sample_columns(con, PROFILE, "titanic", "1", "stable", window)
    some = sample_columns(con, PROFILE, "titanic", "1", "stable", window, limit=30)

    assert set(everything) == {
        "in_fare",
        "in_age",
        "in_sex",
        "in_alone",
        "in_pclass",
        "in_rating",
        "in_cabin",
    }
    assert len(everything["in_fare"]) == 150
    assert everything["in_fare"].dtype == np.float64
    fares = [np.nan if r.inputs["fare"] is None else r.inputs["fare"] for r in rows]
    np.testing.assert_array_equal(np.sort(everything["in_fare"]), np.sort(np.array(fares)))
    assert sorted(everything["in_alone"], key=str) == sorted(
        [None if r.inputs["alone"] is None else str(r.inputs["alone"]).lower() for r in rows],
        key=str,
    )
    assert set(everything["in_pclass"]) <= {"1", "2", "3", "4"}
    assert set(everything["in_rating"]) == {"1", "2", "3", None}
    assert all(v is None for v in everything["in_cabin"])
    assert len(some["in_fare"]) == 30
    again = sample_columns(con, PROFILE, "titanic", "1", "stable", window, limit=30)
    np.testing.assert_array_equal(again["in_fare"], some["in_fare"])  # fixed seed


def test_labelled_errors_of_the_window(store, con):
    window = window_bounds(con, "titanic", "1", "stable", end=END, last_s=HOUR)
    assert window is not None
    rows = sorted(in_window(store.stable, window), key=lambda r: r.timestamp)
    labelled = [r for r in rows if r.request_id in store.labels]
    classes = PerformanceReference("error_rate", "out_label", 100, 0.2, 0.4)
    numbers = PerformanceReference("mean_absolute_error", "out_probability", 100, 0.3, 0.2)

    errors = labelled_errors(con, classes, "titanic", "1", "stable", window)
    distances = labelled_errors(con, numbers, "titanic", "1", "stable", window)

    assert list(errors) == [
        float(r.outputs["label"] != store.labels[r.request_id]) for r in labelled
    ]
    assert 0 < errors.sum() < len(errors)
    np.testing.assert_allclose(
        distances,
        [abs(r.outputs["probability"] - store.labels[r.request_id]) for r in labelled],
    )
    missing = PerformanceReference("error_rate", "out_class", 100, 0.2, 0.4)
    assert labelled_errors(con, missing, "titanic", "1", "stable", window).size == 0


def endless_predictions() -> duckdb.DuckDBPyConnection:
    """A connection whose ``predictions`` has a trillion answered rows: a window query that
    runs for hours, as one over a huge or stuck store would."""
    con = duckdb.connect()
    con.execute(
        """CREATE VIEW predictions AS
        SELECT 'titanic_' || (range % 7) AS model, '1' AS version, 'stable' AS arm,
               200 AS status, DATE '2025-03-14' AS "date",
               TIMESTAMPTZ '2025-03-14 11:30:00+00' AS "timestamp"
        FROM range(1000000000000)"""
    )
    return con


@pytest.mark.parametrize(
    "query",
    [
        lambda con: groups(con, START),
        lambda con: window_bounds(con, "titanic_1", "1", "stable", end=END, last_s=HOUR),
    ],
    ids=["groups", "window_bounds"],
)
def test_a_window_query_is_interrupted_at_the_drift_runs_time_limit(query) -> None:
    """DuckDB queries have no timeout: a drift run's query ran for as long as it took,
    holding up every job of the process. The run's time limit now interrupts it."""
    jobs = JobScheduler(CollectorRegistry(), trace.NoOpTracer())
    jobs.stop_grace_s = 3.0
    con = endless_predictions()
    try:
        jobs.add("drift", 60, lambda: query(con), timeout_s=0.5)
        started = time.monotonic()
        assert not jobs.run_once(jobs.jobs[0])
        assert jobs.jobs[0].straggler is None  # the query stopped: the run returned
        assert time.monotonic() - started < 3
    finally:  # without the limit, stop the query all the same
        con.interrupt()
        if jobs.jobs[0].straggler is not None:
            jobs.jobs[0].straggler.join(5)
        con.close()

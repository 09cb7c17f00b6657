"""drift.results: a run as rows of the drift_results tree, and as the latest-results entry."""

from __future__ import annotations

import math
from datetime import date
from pathlib import Path

import duckdb
import pytest

from drift.results import (
    DRIFT_RESULTS,
    RESULT_SCHEMA,
    ensure_results_placeholder,
    latest_entry,
    publish_latest,
    result_table,
    write_results,
)
from monitoring.job_results import read_latest
from tests.drift.runs import RUN_TIME, WINDOW_SQL, make_run


def read_tree(store: Path) -> duckdb.DuckDBPyRelation:
    glob = f"{store / DRIFT_RESULTS}/*/*/*.parquet"
    con = duckdb.connect()
    return con.sql(
        f"SELECT * FROM read_parquet('{glob}', hive_partitioning = true, "
        "hive_types = {'model': 'VARCHAR', 'date': 'DATE'})"
    )


def test_result_table_has_one_row_per_finding_in_the_schema() -> None:
    run = make_run()
    table = result_table(run)
    assert table.schema == RESULT_SCHEMA
    assert table.num_rows == len(run.findings)
    assert table.column("feature").to_pylist() == [f.feature for f in run.findings]


def test_segment_reads_back_with_hive_partitions(tmp_path: Path) -> None:
    store = tmp_path / "store"
    run = make_run(model="fraud model", report="/reports/drift/fraud%20model/2/run-0001.html")
    path = write_results(store, run)

    assert path.parent == store / DRIFT_RESULTS / "model=fraud%20model" / "date=2025-03-14"
    relation = read_tree(store)
    types = dict(zip(relation.columns, (str(t) for t in relation.types), strict=True))
    assert types["timestamp"] == "TIMESTAMP WITH TIME ZONE"
    assert types["window_start"] == "TIMESTAMP WITH TIME ZONE"
    assert types["score"] == types["p_value"] == types["psi"] == "DOUBLE"
    assert types["drifted"] == "BOOLEAN"
    assert types["window_rows"] == types["reference_rows"] == "BIGINT"
    assert types["model"] == "VARCHAR" and types["date"] == "DATE"
    assert set(relation.columns) == {*RESULT_SCHEMA.names, "model", "date"}

    rows = relation.order("feature").fetchall()
    by_feature = {row[relation.columns.index("feature")]: row for row in rows}
    column = relation.columns.index

    sex = by_feature["sex"]
    assert sex[column("model")] == "fraud model"  # percent-decoded from the folder name
    assert sex[column("date")] == date(2025, 3, 14)
    assert sex[column("timestamp")] == RUN_TIME
    assert sex[column("drifted")] is True
    assert sex[column("statistic")] == "chi_square"
    assert sex[column("p_value")] == pytest.approx(1.2e-9)
    assert sex[column("psi")] == pytest.approx(0.41)
    assert sex[column("window_kind")] == "time"
    assert sex[column("window_rows")] == 505
    assert sex[column("reference")] == "titanic-2-20250301.json"
    assert sex[column("sql")] == WINDOW_SQL
    assert sex[column("report")] == run.report

    assert by_feature["probability"][column("p_value")] is None
    joint = by_feature["__multivariate__"]
    assert math.isnan(joint[column("score")])  # NaN stays NaN, not NULL
    assert joint[column("psi")] is None
    assert joint[column("role")] == "joint"


def test_placeholder_keeps_the_glob_readable_before_the_first_run(tmp_path: Path) -> None:
    store = tmp_path / "store"
    ensure_results_placeholder(store)
    ensure_results_placeholder(store)  # idempotent
    assert read_tree(store).fetchall() == []

    write_results(store, make_run())
    counts = read_tree(store).aggregate("model, count(*)", "model").fetchall()
    assert counts == [("titanic", 4)]


def test_latest_entry_is_plain_json_with_null_for_nan() -> None:
    entry = latest_entry(make_run(report="/reports/drift/titanic/2/run-0001.html"))
    assert entry["timestamp"] == "2025-03-14T09:30:00+00:00"
    assert entry["window"] == {
        "kind": "time",
        "start": "2025-03-14T08:30:00+00:00",
        "end": "2025-03-14T09:30:00+00:00",
        "rows": 505,
    }
    features = {f["feature"]: f for f in entry["features"]}
    assert features["sex"] == {
        "feature": "sex",
        "test": "chi_square",
        "score": 181.7,
        "p_value": 1.2e-9,
        "threshold": 0.0125,
        "drifted": True,
    }
    assert features["__multivariate__"]["score"] is None


def test_publish_latest_merges_runs_under_their_keys(tmp_path: Path) -> None:
    store = tmp_path / "store"
    publish_latest(store, make_run(arm="primary", run_id="a"))
    publish_latest(store, make_run(arm="shadow", run_id="b"))
    publish_latest(store, make_run(arm="primary", run_id="c"))  # replaces "a"

    latest = read_latest(store, "drift")
    assert set(latest) == {"titanic/2/primary", "titanic/2/shadow"}
    assert latest["titanic/2/primary"]["run_id"] == "c"
    assert latest["titanic/2/shadow"]["arm"] == "shadow"

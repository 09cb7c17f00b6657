"""``run_sql``: one read-only statement over the views, capped in rows and time."""

from __future__ import annotations

from pathlib import Path

import duckdb
import pytest

from monitoring.prediction_log import (
    PredictionLogWriter,
    SqlError,
    SqlRefused,
    connect_readonly,
    run_sql,
)
from tests.monitoring.builders import FAILS_LATE, label, predictions


@pytest.fixture
def logged(writer: PredictionLogWriter, store: Path) -> Path:
    """A store with 5 predictions of titanic, 2 of digits, and one label."""
    writer.submit([*predictions(5), *predictions(2, prefix="d", model="digits")])
    writer.submit([label("req-0", None, 1)])
    writer.flush()
    return store


@pytest.mark.parametrize(
    "query",
    [
        "CREATE TABLE t AS SELECT 1",
        "CREATE TEMP TABLE t (a INT)",
        "DROP VIEW predictions",
        "CREATE OR REPLACE VIEW predictions AS SELECT 1",
        "ALTER VIEW predictions RENAME TO p",
        "INSERT INTO predictions SELECT * FROM predictions",
        "UPDATE predictions SET status = 500",
        "DELETE FROM predictions",
        "COPY (SELECT * FROM predictions) TO '/tmp/leak.csv'",
        "EXPORT DATABASE '/tmp/leak'",
        "ATTACH '/tmp/other.duckdb' AS other",
        "DETACH driftgate",
        "INSTALL httpfs",
        "LOAD httpfs",
        "SET enable_external_access = true",
        "RESET lock_configuration",
        "PRAGMA version",
        "CALL pragma_version()",
        "CHECKPOINT",
        "VACUUM",
        "USE memory",
        "BEGIN TRANSACTION",
    ],
)
def test_statements_that_are_not_read_only_are_refused(logged: Path, query: str) -> None:
    with pytest.raises(SqlRefused, match="refused: this SQL access is read-only"):
        run_sql(logged, query)


@pytest.mark.parametrize(
    "explained",
    [
        "COPY (SELECT 'forged' AS request_id) TO '{store}/predictions/forged.parquet'",
        "INSERT INTO predictions SELECT * FROM predictions",
        "/* */ COPY (SELECT 1) TO '{store}/x.csv'",
    ],
)
@pytest.mark.parametrize("form", ["EXPLAIN ANALYZE", "explain analyse", "/* c */ EXPLAIN"])
def test_explain_analyze_cannot_run_what_is_refused(
    logged: Path, form: str, explained: str
) -> None:
    """EXPLAIN ANALYZE executes its statement: COPY under it wrote files into the store."""
    before = sorted(logged.rglob("*"))
    with pytest.raises(SqlRefused, match=r"EXPLAIN of (COPY|INSERT) statement is refused"):
        run_sql(logged, f"{form} {explained.format(store=logged)}")
    assert sorted(logged.rglob("*")) == before


@pytest.mark.parametrize(
    "query",
    [
        "EXPLAIN (ANALYZE) COPY (SELECT 1) TO '{store}/x.csv'",
        "EXPLAIN (ANALYZE, FORMAT json) SELECT 1",
    ],
)
def test_other_explain_forms_are_refused(logged: Path, query: str) -> None:
    with pytest.raises(SqlRefused, match=r"EXPLAIN is accepted as EXPLAIN \[ANALYZE\]"):
        run_sql(logged, query.format(store=logged))


def test_explain_analyze_of_a_select_runs(logged: Path) -> None:
    result = run_sql(logged, "EXPLAIN ANALYZE SELECT count(*) FROM predictions")
    assert result.columns == ["explain_key", "explain_value"]


def test_only_one_statement_runs(logged: Path) -> None:
    with pytest.raises(SqlRefused, match="one statement at a time"):
        run_sql(logged, "SELECT 1; DROP VIEW predictions")
    with pytest.raises(SqlRefused, match="empty query"):
        run_sql(logged, "  ;  ")


@pytest.mark.parametrize(
    "query",
    [
        "SELECT * FROM read_csv('/etc/passwd')",
        "SELECT * FROM read_text('/etc/hostname')",
        "SELECT * FROM glob('/etc/*')",
        "SELECT * FROM read_parquet('/tmp/**/*.parquet')",
    ],
)
def test_files_outside_the_store_cannot_be_read(logged: Path, query: str) -> None:
    with pytest.raises(SqlError, match="Permission Error"):
        run_sql(logged, query)


def test_read_only_statements_answer_over_the_views(logged: Path) -> None:
    result = run_sql(
        logged, "SELECT model, count(*) AS n FROM predictions GROUP BY model ORDER BY model"
    )
    assert result.columns == ["model", "n"]
    assert result.rows == [("digits", 2), ("titanic", 5)]
    assert result.truncated is False
    labelled = "WITH l AS (SELECT * FROM predictions_labeled) SELECT count(label) FROM l"
    assert run_sql(logged, labelled).rows == [(1,)]
    for query in [
        "DESCRIBE predictions",
        "SHOW TABLES",
        "SUMMARIZE feedback",
        "EXPLAIN SELECT * FROM predictions",
        "FROM drift_results",
    ]:
        assert run_sql(logged, query).columns, query


def test_rows_are_capped_and_the_cap_is_reported(logged: Path) -> None:
    capped = run_sql(logged, "SELECT * FROM range(100000)", max_rows=3)
    assert capped.rows == [(0,), (1,), (2,)]
    assert capped.truncated is True
    exact = run_sql(logged, "SELECT * FROM range(3)", max_rows=3)
    assert exact.truncated is False


def test_bytes_are_capped_like_rows(logged: Path) -> None:
    """200 rows of 5 MB each built a 1 GB answer in the gateway; a byte cap truncates it."""
    query = "SELECT i, repeat('x', 1000) AS s FROM range(100) t(i)"
    capped = run_sql(logged, query, max_bytes=10_000)
    assert capped.truncated is True
    assert 5 <= len(capped.rows) < 10
    assert [row[0] for row in capped.rows] == list(range(len(capped.rows)))
    assert run_sql(logged, query, max_bytes=10**6).truncated is False


def test_a_slow_query_is_interrupted_after_the_time_limit(logged: Path) -> None:
    with pytest.raises(SqlError, match=r"exceeded 0.3 s"):
        run_sql(logged, "SELECT count(*) FROM range(10000000000) a", timeout_s=0.3)


def test_an_error_while_rows_stream_is_a_sql_error_with_duckdb_s_message(logged: Path) -> None:
    with pytest.raises(SqlError, match="Conversion Error: Could not convert string 'x100001'"):
        run_sql(logged, FAILS_LATE, max_rows=1_000_000)


def test_a_query_interrupted_while_rows_stream_is_reported_as_the_time_limit(
    logged: Path,
) -> None:
    endless = "SELECT i, md5(i::VARCHAR) FROM range(10000000000) t(i)"
    with pytest.raises(SqlError, match=r"exceeded 0.3 s"):
        run_sql(logged, endless, max_rows=10**12, timeout_s=0.3)


def test_duckdb_errors_come_back_with_duckdb_s_message(logged: Path) -> None:
    with pytest.raises(SqlError, match="Parser Error"):
        run_sql(logged, "SELEC 1")
    with pytest.raises(SqlError, match="no_such_table"):
        run_sql(logged, "SELECT * FROM no_such_table")


def test_the_analyst_connection_cannot_unlock_its_sandbox(logged: Path) -> None:
    with connect_readonly(logged) as con:
        assert con.execute("SELECT count(*) FROM predictions").fetchall() == [(7,)]
        with pytest.raises(duckdb.InvalidInputException, match="locked"):
            con.execute("SET enable_external_access = true")
        with pytest.raises(duckdb.PermissionException):
            con.execute("SELECT * FROM read_csv('/etc/passwd')")
        with pytest.raises(duckdb.Error):
            con.execute("CREATE TABLE t (a INT)")
        # A second connection of the same process shares the (already locked) sandbox.
        with connect_readonly(logged) as second, pytest.raises(duckdb.PermissionException):
            second.execute("SELECT * FROM read_csv('/etc/passwd')")

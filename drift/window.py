"""Reading one window of the prediction log for a drift run: bounds, one scan, samples.

A drift run (``drift.job``) asks, for every (model, version, arm) that served recently
(``groups``), which rows make its window (``window_bounds``: the last N seconds, or the
last N rows), then counts every profiled feature of those rows over the reference's bins
in ONE aggregate query (``scan_window``). That query is plain SQL over the catalog's
``predictions`` view with every value written in (``window_sql``), so on-call can paste
it into ``driftgate sql`` and get the same numbers. The PCA test needs rows rather than
counts (``sample_columns``: a fixed-seed reservoir sample), the performance test the
labelled rows' errors (``labelled_errors``).

Every query keeps rows with ``status < 400`` of one model, version and arm; a time window
is ``(end - last_s, end]``, a count window ``[timestamp of the N-th newest row, end]``
(rows tied with that timestamp are all in). The ``date`` partition is filtered too, so
DuckDB reads only the days the window covers. Every query's connection is handed to the
time limit of the job run in progress (``monitoring.job_run.watch_connection``), which
interrupts it when the run takes too long: a query has no timeout of its own.

How values are counted (the same as ``drift.distributions``' numpy builders):

- numeric: ``histogram(x, [edges])`` bins ``(previous edge, edge]`` keyed by the upper
  edge, ``+inf`` for the overflow; NaN and the infinities are excluded (DuckDB would put
  NaN in the first bin) and counted as missing with NULL, as a reference profile counts
  them (the gateway logs an infinity as NULL; a store written otherwise is read the
  same way). Integers are cast to DOUBLE (DuckDB would cast
  the edges to the column's type), text is ``TRY_CAST`` (what is not a number is
  missing).
- categorical: ``histogram(CAST(x AS VARCHAR))``: booleans give ``true``/``false`` and
  integers ``3`` as ``category_text`` does; a key that is no category but spells a number
  (``3.0``, from a floating-point column, or from a column that some segment's text made
  text in the view) is read back as the number, so that ``3.0`` is the category ``3``,
  and ``nan`` is missing.
- a profiled column the view does not have (a version without that feature), or has
  as a list: every row counts as missing.

The answers become arrays and counts in ``drift.fetched_values``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

import duckdb
import numpy as np

from drift.distributions import Distribution, category_text
from drift.fetched_values import (
    histogram_category_counts,
    histogram_numeric_counts,
    row_errors,
    unmask,
)
from drift.findings import Window
from monitoring.job_run import watch_connection
from monitoring.prediction_log.catalog import sql_string

if TYPE_CHECKING:
    from drift.profile import FeatureProfile, PerformanceReference, ReferenceProfile

_FLOATING = ("DOUBLE", "FLOAT", "REAL")
#: Exact number types (and their unsigned ``U...`` twins), read as DOUBLE for binning.
_INTEGERS = ("BOOLEAN", "TINYINT", "SMALLINT", "INTEGER", "BIGINT", "HUGEINT")


@dataclass(frozen=True)
class WindowScan:
    """The counts of one window over a profile's bins, and the SQL that gave them.

    ``distributions`` is keyed by column; ``rows`` is every row of the window.
    """

    window: Window
    rows: int
    distributions: dict[str, Distribution]
    sql: str


def groups(con: duckdb.DuckDBPyConnection, since: datetime) -> list[tuple[str, str, str]]:
    """Every (model, version, arm) with a row answered (status < 400) at or after ``since``."""
    query = f"""SELECT DISTINCT model, version, arm
FROM predictions
WHERE "date" >= {_date(since)} AND "timestamp" >= {_timestamp(since)} AND status < 400
    AND model IS NOT NULL AND version IS NOT NULL AND arm IS NOT NULL
ORDER BY model, version, arm"""
    return [(str(m), str(v), str(a)) for m, v, a in _execute(con, query).fetchall()]


def last_answered_sql(model: str, version: str, arm: str) -> str:
    """SQL giving the time of the latest answered row of one model version and arm."""
    return (
        'SELECT max("timestamp") AS last_answered FROM predictions\n'
        f"WHERE {_group_filter(model, version, arm)}"
    )


def last_answered(
    con: duckdb.DuckDBPyConnection, model: str, version: str, arm: str
) -> datetime | None:
    """When the model version and arm last answered (``status < 400``); None: never, as
    far as the store still holds."""
    found = _execute(con, last_answered_sql(model, version, arm)).fetchall()[0][0]
    return None if found is None else _utc(found)


def window_bounds(
    con: duckdb.DuckDBPyConnection,
    model: str,
    version: str,
    arm: str,
    *,
    end: datetime,
    last_s: float | None = None,
    rows: int | None = None,
) -> Window | None:
    """The window ending at ``end``: the last ``last_s`` seconds or the last ``rows`` rows
    (exactly one of them); None when it holds no row."""
    if (last_s is None) == (rows is None):
        raise ValueError("give exactly one of last_s (a time window) and rows (a count window)")
    end = _utc(end)
    group = _group_filter(model, version, arm)
    if rows is not None:
        if rows < 1:
            raise ValueError(f"a count window needs rows >= 1, got {rows}")
        query = f"""SELECT epoch_us(min("timestamp")), count(*) FROM (
    SELECT "timestamp" FROM predictions
    WHERE {group} AND "date" <= {_date(end)} AND "timestamp" <= {_timestamp(end)}
    ORDER BY "timestamp" DESC LIMIT {int(rows)}
)"""
        first_us, count = _execute(con, query).fetchall()[0]
        if not count:
            return None
        start = datetime(1970, 1, 1, tzinfo=UTC) + timedelta(microseconds=int(first_us))
        return Window(kind="count", start=start, end=end, rows=int(count))
    assert last_s is not None
    if last_s <= 0:
        raise ValueError(f"a time window needs last_s > 0, got {last_s}")
    start = end - timedelta(seconds=last_s)
    window = Window(kind="time", start=start, end=end, rows=0)
    query = f"SELECT count(*) FROM predictions WHERE {_window_filter(model, version, arm, window)}"
    count = int(_execute(con, query).fetchall()[0][0])
    return Window(kind="time", start=start, end=end, rows=count) if count else None


def window_sql(
    profile: ReferenceProfile,
    model: str,
    version: str,
    arm: str,
    window: Window,
    *,
    columns: Mapping[str, str] | None = None,
) -> str:
    """The one SELECT that counts every profiled feature of the window (module doc).

    ``columns`` are the view's columns and types (``DESCRIBE predictions``); without
    them every profiled column is assumed present and of its profile's kind.
    """
    selected = ['count(*) AS "rows"']
    for feature in profile.features:
        counts, missing = _aggregates(feature, _column_type(feature, columns))
        selected.append(f"{counts} AS {quote_identifier(feature.column + ' bins')}")
        selected.append(f"{missing} AS {quote_identifier(feature.column + ' missing')}")
    select_list = ",\n    ".join(selected)
    return f"""SELECT
    {select_list}
FROM predictions
WHERE {_window_filter(model, version, arm, window)}"""


def scan_window(  # noqa: PLR0917 - positional like the job's other window calls
    con: duckdb.DuckDBPyConnection,
    profile: ReferenceProfile,
    model: str,
    version: str,
    arm: str,
    window: Window,
) -> WindowScan:
    """Count the window's rows over the profile's bins in one scan of the log."""
    columns = view_columns(con)
    sql = window_sql(profile, model, version, arm, window, columns=columns)
    found = _execute(con, sql).fetchall()[0]
    rows = int(found[0])
    distributions: dict[str, Distribution] = {}
    for i, feature in enumerate(profile.features):
        bins, missing = found[1 + 2 * i], int(found[2 + 2 * i])
        reference = feature.distribution
        if reference.kind == "numeric" and not reference.edges:
            counts = np.asarray([rows - missing])
        elif reference.kind == "numeric":
            counts = histogram_numeric_counts(bins, reference.edges)
        else:
            counts, nan = histogram_category_counts(bins, reference.categories)
            if _column_type(feature, columns) not in _FLOATING:  # else counted as missing
                missing += nan
        distributions[feature.column] = reference.with_counts(counts, missing)
    return WindowScan(window=window, rows=rows, distributions=distributions, sql=sql)


def sample_columns(  # noqa: PLR0917 - positional like the job's other window calls
    con: duckdb.DuckDBPyConnection,
    profile: ReferenceProfile,
    model: str,
    version: str,
    arm: str,
    window: Window,
    limit: int = 20_000,
) -> dict[str, np.ndarray]:
    """The input features of up to ``limit`` rows of the window (reservoir sample, fixed
    seed): numeric as float64 with NaN, categorical as object arrays of str or None."""
    columns = view_columns(con)
    inputs = [f for f in profile.features if f.role == "input"]
    if not inputs:
        return {}
    selected = []
    for feature in inputs:
        duckdb_type = _column_type(feature, columns)
        if feature.distribution.kind == "numeric":
            value = _numeric_value(feature.column, duckdb_type) or "CAST(NULL AS DOUBLE)"
        else:
            readable = duckdb_type is not None and not is_nested_type(duckdb_type)
            value = quote_identifier(feature.column) if readable else "NULL"
        selected.append(f"{value} AS {quote_identifier(feature.column)}")
    # The sample clause applies before WHERE in a plain SELECT: sample the filtered rows.
    query = f"""SELECT * FROM (
    SELECT {", ".join(selected)}
    FROM predictions
    WHERE {_window_filter(model, version, arm, window)}
) USING SAMPLE reservoir({int(limit)} ROWS) REPEATABLE (0)"""
    fetched = _execute(con, query).fetchnumpy()
    sample: dict[str, np.ndarray] = {}
    for feature in inputs:
        values = unmask(fetched[feature.column])
        if feature.distribution.kind == "numeric":
            sample[feature.column] = np.asarray(values, dtype=np.float64)
        else:
            sample[feature.column] = np.asarray([category_text(v) for v in values], dtype=object)
    return sample


def labelled_errors(  # noqa: PLR0917 - positional like the job's other window calls
    con: duckdb.DuckDBPyConnection,
    performance: PerformanceReference,
    model: str,
    version: str,
    arm: str,
    window: Window,
) -> np.ndarray:
    """The per-row errors (see ``row_errors``) of the window's labelled
    rows, in timestamp order; empty when the view lacks the prediction column."""
    columns = view_columns(con, "predictions_labeled")
    prediction_type = columns.get(performance.prediction)
    if prediction_type is None or is_nested_type(prediction_type):
        return np.zeros(0, dtype=np.float64)
    query = f"""SELECT {quote_identifier(performance.prediction)} AS prediction, label
FROM predictions_labeled
WHERE {_window_filter(model, version, arm, window)} AND label IS NOT NULL
ORDER BY "timestamp", request_id, "row\""""
    fetched = _execute(con, query).fetchnumpy()
    return row_errors(performance.metric, fetched["prediction"], fetched["label"])


def view_columns(con: duckdb.DuckDBPyConnection, view: str = "predictions") -> dict[str, str]:
    """Every column of a catalog view with its DuckDB type (``DOUBLE``, ``VARCHAR[]``)."""
    return {str(row[0]): str(row[1]) for row in _execute(con, f"DESCRIBE {view}").fetchall()}


def is_nested_type(duckdb_type: str) -> bool:
    """Lists, structs, maps: values no profile describes."""
    return duckdb_type.endswith("]") or duckdb_type.startswith(("STRUCT", "MAP", "UNION"))


def quote_identifier(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _aggregates(feature: FeatureProfile, duckdb_type: str | None) -> tuple[str, str]:
    """The (bins, missing) aggregate expressions of one feature."""
    column = quote_identifier(feature.column)
    reference = feature.distribution
    if reference.kind == "numeric":
        value = _numeric_value(feature.column, duckdb_type)
        if value is None:
            return "NULL", "count(*)"
        missing = f"count(*) FILTER (WHERE {value} IS NULL OR {_is_not_finite(value)})"
        if not reference.edges:  # one bin: every value that is not missing
            return "NULL", missing
        edges = _edges_literal(reference.edges)
        return f"histogram({value}, {edges}) FILTER (WHERE NOT {_is_not_finite(value)})", missing
    if duckdb_type is None or is_nested_type(duckdb_type):
        return "NULL", "count(*)"
    text = column if duckdb_type == "VARCHAR" else f"CAST({column} AS VARCHAR)"
    if duckdb_type in _FLOATING:
        return (
            f"histogram({text}) FILTER (WHERE NOT {_is_not_finite(column)})",
            f"count(*) FILTER (WHERE {column} IS NULL OR {_is_not_finite(column)})",
        )
    return f"histogram({text})", f"count(*) FILTER (WHERE {column} IS NULL)"


def _is_not_finite(value: str) -> str:
    """SQL that is true when ``value`` is NaN or an infinity (NULL when it is NULL).

    An equality, not ``isnan()``/``isinf()``: DuckDB holds NaN equal to itself, and DuckDB
    2.0.1 answers ``count(*) FILTER (WHERE isnan(x))`` with 0 over Parquet files whose
    column holds NaNs (the row-wise ``isnan`` is right; the aggregate filter is not), which
    hid every missing value from the drift job (tests/drift/test_job.py, the missing-value
    test).
    """
    return f"({value} IN ('NaN'::DOUBLE, 'Infinity'::DOUBLE, '-Infinity'::DOUBLE))"


def _numeric_value(column: str, duckdb_type: str | None) -> str | None:
    """A DOUBLE expression of a numeric column; None when it cannot be one."""
    quoted = quote_identifier(column)
    if duckdb_type is None or is_nested_type(duckdb_type):
        return None
    if duckdb_type == "DOUBLE":
        return quoted
    exact = duckdb_type.removeprefix("U") in _INTEGERS or duckdb_type.startswith("DECIMAL")
    if exact or duckdb_type in _FLOATING:
        return f"CAST({quoted} AS DOUBLE)"
    if duckdb_type in ("VARCHAR", "ANY"):
        return f"TRY_CAST({quoted} AS DOUBLE)"
    return None


def _column_type(feature: FeatureProfile, columns: Mapping[str, str] | None) -> str | None:
    """The view's type of the feature's column (None: absent); ``ANY`` without
    ``columns`` (numbers are then read with TRY_CAST, categories cast to VARCHAR)."""
    if columns is None:
        return "ANY"
    return columns.get(feature.column)


def _edges_literal(edges: tuple[float, ...]) -> str:
    def literal(edge: float) -> str:
        return repr(edge) if math.isfinite(edge) else f"'{edge!r}'::DOUBLE"

    return "[" + ", ".join(literal(e) for e in edges) + "]::DOUBLE[]"


def _execute(con: duckdb.DuckDBPyConnection, query: str) -> duckdb.DuckDBPyConnection:
    """``con.execute(query)``, interruptible by the time limit of the job run in progress."""
    watch_connection(con)
    return con.execute(query)


def _group_filter(model: str, version: str, arm: str) -> str:
    return (
        f"model = {sql_string(model)} AND version = {sql_string(version)} "
        f"AND arm = {sql_string(arm)} AND status < 400"
    )


def _window_filter(model: str, version: str, arm: str, window: Window) -> str:
    start, end = _utc(window.start), _utc(window.end)
    after = ">=" if window.kind == "count" else ">"
    return (
        f"{_group_filter(model, version, arm)}\n"
        f'    AND "date" BETWEEN {_date(start)} AND {_date(end)}\n'
        f'    AND "timestamp" {after} {_timestamp(start)} AND "timestamp" <= {_timestamp(end)}'
    )


def _utc(moment: datetime) -> datetime:
    """A timestamp in UTC; a naive one is taken as UTC (as the log's writer does)."""
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def _timestamp(moment: datetime) -> str:
    return f"TIMESTAMPTZ '{_utc(moment).strftime('%Y-%m-%d %H:%M:%S.%f')}+00'"


def _date(moment: datetime) -> str:
    return f"DATE '{_utc(moment).date().isoformat()}'"

"""Read-only SQL over the store for analysts: ``driftgate sql`` and ``POST /admin/sql``.

Two guards, either enough for the usual attacks, together defence in depth:

1. The statement: DuckDB parses the text (``extract_statements``); exactly one statement
   of a read-only type (SELECT, WITH, DESCRIBE, SHOW, SUMMARIZE, FROM ..., EXPLAIN of one of
   those) runs. DDL, DML, COPY, EXPORT, ATTACH, INSTALL/LOAD, PRAGMA, SET, CALL... raise
   ``SqlRefused``, and so does EXPLAIN of any of them, since ``EXPLAIN ANALYZE`` executes
   what it explains.
2. The connection (``connect_readonly``): read-only catalog, file access limited to the
   store, configuration locked: ``read_csv('/etc/passwd')`` fails inside DuckDB.

Rows are capped (``max_rows``; ``truncated`` says more existed) and time is capped: a
watchdog interrupts the query after ``timeout_s``. Rows are fetched through Arrow, so
TIMESTAMPTZ values come back as tz-aware datetimes without needing pytz.
"""

from __future__ import annotations

import re
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb

from monitoring.prediction_log.catalog import CatalogBusy, connect_readonly
from monitoring.prediction_log.quarantine import set_aside_damaged

#: Statement types that cannot change anything (DESCRIBE, SHOW, SUMMARIZE parse as SELECT).
ALLOWED_STATEMENTS = frozenset({duckdb.StatementType.SELECT, duckdb.StatementType.EXPLAIN})
_BATCH_ROWS = 2048


class SqlRefused(Exception):
    """The query is not a single read-only statement; nothing was run."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class SqlError(Exception):
    """DuckDB could not run the query (syntax, binding, permission, time limit...)."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


@dataclass(frozen=True, slots=True)
class SqlResult:
    columns: list[str]
    rows: list[tuple[Any, ...]]
    truncated: bool


def check_statement(con: duckdb.DuckDBPyConnection, query: str) -> None:
    """Raise ``SqlRefused`` unless ``query`` is exactly one read-only statement."""
    try:
        statements = con.extract_statements(query)
    except duckdb.Error as exc:
        raise SqlError(str(exc)) from exc
    if not statements:
        raise SqlRefused("empty query: send one SELECT statement")
    if len(statements) > 1:
        raise SqlRefused(f"send one statement at a time ({len(statements)} found)")
    kind = statements[0].type
    if kind not in ALLOWED_STATEMENTS:
        raise SqlRefused(
            f"{kind.name} statements are refused: this SQL access is read-only; "
            "use SELECT, WITH, EXPLAIN, DESCRIBE, SHOW or SUMMARIZE"
        )
    if kind == duckdb.StatementType.EXPLAIN:
        _check_explained(con, statements[0].query)


#: The one EXPLAIN form accepted: ``EXPLAIN [ANALYZE] <statement>``, after any comments.
_EXPLAIN = re.compile(
    r"(?:\s|--[^\n]*(?:\n|$)|/\*.*?\*/)*explain\s+(?:analy[sz]e\s+)?", re.I | re.S
)


def _check_explained(con: duckdb.DuckDBPyConnection, query: str) -> None:
    """``EXPLAIN ANALYZE`` runs the statement it explains (``COPY ... TO`` writes its file):
    what follows EXPLAIN must itself be one read-only statement."""
    accepted = "EXPLAIN is accepted as EXPLAIN [ANALYZE] followed by a SELECT"
    form = _EXPLAIN.match(query)
    if form is None:
        raise SqlRefused(accepted)
    try:
        explained = con.extract_statements(query[form.end() :])
    except duckdb.Error as exc:  # EXPLAIN (ANALYZE, FORMAT json) ...: options in brackets
        raise SqlRefused(f"{accepted}: {exc}") from exc
    if len(explained) != 1 or explained[0].type != duckdb.StatementType.SELECT:
        kind = explained[0].type.name if explained else "an empty"
        raise SqlRefused(
            f"EXPLAIN of {kind} statement is refused: EXPLAIN ANALYZE would run it; "
            "explain a SELECT"
        )


def run_sql(
    root: Path,
    query: str,
    *,
    max_rows: int = 10_000,
    timeout_s: float = 30,
    max_bytes: int | None = None,
) -> SqlResult:
    """Run one read-only query against the store's catalog (see the module docstring).

    ``max_bytes`` caps the result as ``max_rows`` does, by the Arrow size of its rows. A
    segment that is not readable Parquet is set aside and the query runs again
    (``monitoring.prediction_log.quarantine``).
    """
    return set_aside_damaged(root, lambda: _run_once(root, query, max_rows, timeout_s, max_bytes))


def _run_once(
    root: Path, query: str, max_rows: int, timeout_s: float, max_bytes: int | None
) -> SqlResult:
    try:
        con = connect_readonly(root)
    except (duckdb.Error, CatalogBusy, PermissionError) as exc:
        raise SqlError(str(exc)) from exc
    try:
        check_statement(con, query)
        timed_out = threading.Event()

        def interrupt() -> None:
            timed_out.set()
            con.interrupt()

        watchdog = threading.Timer(timeout_s, interrupt)
        watchdog.daemon = True
        watchdog.start()
        try:
            try:
                return _fetch(con, query, max_rows, max_bytes)
            except (duckdb.IOException, OSError) as exc:
                if not _vanished(exc):
                    raise
                # A compaction or retention removed a segment between listing and reading.
                return _fetch(con, query, max_rows, max_bytes)
        # An error raised while rows stream (a cast that fails on the 10,000th row, segments
        # whose types disagree) reaches Python through the Arrow reader as a plain OSError.
        except (duckdb.Error, OSError) as exc:
            if timed_out.is_set():
                raise SqlError(f"query exceeded {timeout_s:g} s and was interrupted") from exc
            raise SqlError(str(exc)) from exc
        finally:
            watchdog.cancel()
    finally:
        con.close()


def _vanished(exc: Exception) -> bool:
    message = str(exc)
    return "No such file" in message or "Cannot open file" in message


def _fetch(
    con: duckdb.DuckDBPyConnection, query: str, max_rows: int, max_bytes: int | None
) -> SqlResult:
    reader = con.sql(query).to_arrow_reader(min(max_rows + 1, _BATCH_ROWS))
    columns = list(reader.schema.names)
    rows: list[tuple[Any, ...]] = []
    truncated = False
    room = max_bytes
    try:
        for streamed in reader:
            batch = streamed
            if room is not None and batch.nbytes > room:  # keep the rows that fit, in order
                batch, truncated = batch.slice(0, _rows_within(batch, room)), True
            if room is not None:
                room -= batch.nbytes
            values = [column.to_pylist() for column in batch.columns]
            rows.extend(zip(*values, strict=True))
            if len(rows) > max_rows:
                del rows[max_rows:]
                truncated = True
            if truncated:
                break
    finally:
        reader.close()
    return SqlResult(columns, rows, truncated)


def _rows_within(batch: Any, room: int) -> int:
    """How many of the batch's first rows fit in ``room`` bytes (Arrow sizes)."""
    fitting = 0
    low, high = 0, batch.num_rows
    while low < high:  # binary search: a slice's nbytes is its buffers' extent
        middle = (low + high + 1) // 2
        if batch.slice(0, middle).nbytes <= room:
            low, fitting = middle, middle
        else:
            high = middle - 1
    return fitting

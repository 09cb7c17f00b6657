"""The ``driftgate.duckdb`` catalog: views over the store's Parquet trees, for analysts.

The catalog holds views only (plus ``driftgate_catalog``, one row naming its version and
root); the data are the segments. Views store absolute globs, and every query re-lists
them, so new segments appear without touching the catalog. It is rewritten only when it
is missing, built for another root, or of an older version (``Catalog.ensure``).

A DuckDB file open for writing cannot be opened by anyone else, and one open read-only
blocks a writer. So ``refresh`` never opens the live file for writing: it builds a new
catalog in ``.staging/`` and ``os.replace``s it over the old one. Readers that hold the
old file keep using it (same views); the next ``connect`` gets the new one. Nobody waits.

``connect_readonly`` is the analysts' sandbox: read-only, file access limited to the
store, no extensions, configuration locked (``SET`` cannot undo it).
"""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path

import duckdb

from monitoring.prediction_log.layout import (
    DRIFT_RESULTS,
    EXPLANATIONS,
    FEEDBACK,
    PREDICTIONS,
    catalog_path,
    ensure_placeholder,
    publish,
    staging_file,
    tree_glob,
)
from monitoring.prediction_log.quarantine import set_aside_damaged
from monitoring.prediction_log.segments import PLACEHOLDER_SCHEMAS

log = logging.getLogger(__name__)

#: Bump when a view changes: writers then rebuild the catalog on start.
CATALOG_VERSION = 2
#: Tries to open the catalog while another process holds it read-write (about 4 s).
_CONNECT_ATTEMPTS = 20
# The sandbox SETs change the shared per-file DuckDB instance: serialise connecting.
_CONNECT_LOCK = threading.Lock()


class CatalogBusy(RuntimeError):
    """The catalog file is held open for writing by another process."""

    #: A condition of the moment, whose message (the path, the holder's PID, the remedy)
    #: says all there is: a job that fails on it logs one line (``monitoring.job_runner``).
    explains_itself = True


def sql_string(text: str) -> str:
    """``text`` as a SQL string literal."""
    return "'" + text.replace("'", "''") + "'"


def view_statements(root: Path) -> list[str]:
    """The DDL of every view of the catalog for the store at ``root`` (absolute)."""
    predictions = sql_string(tree_glob(root, PREDICTIONS))
    feedback = sql_string(tree_glob(root, FEEDBACK))
    drift_results = sql_string(tree_glob(root, DRIFT_RESULTS))
    explanations = sql_string(tree_glob(root, EXPLANATIONS))
    return [
        f"""CREATE OR REPLACE VIEW predictions AS
SELECT model, date, * EXCLUDE (model, date)
FROM read_parquet({predictions}, union_by_name = true, hive_partitioning = true,
                  hive_types = {{'model': 'VARCHAR', 'date': 'DATE'}})""",
        f"""CREATE OR REPLACE VIEW feedback AS
SELECT date, * EXCLUDE (date)
FROM read_parquet({feedback}, union_by_name = true, hive_partitioning = true,
                  hive_types = {{'date': 'DATE'}})""",
        # The latest label per (request_id, row); a label sent with row NULL applies to
        # every row of the request, and the later of the two kinds wins.
        """CREATE OR REPLACE VIEW predictions_labeled AS
WITH latest AS (
    SELECT request_id, "row", label, "timestamp", subject
    FROM feedback
    QUALIFY row_number() OVER (PARTITION BY request_id, "row" ORDER BY "timestamp" DESC) = 1
)
SELECT p.*,
    CASE WHEN a."timestamp" IS NULL OR r."timestamp" >= a."timestamp"
         THEN r.label ELSE a.label END AS label,
    CASE WHEN a."timestamp" IS NULL OR r."timestamp" >= a."timestamp"
         THEN r."timestamp" ELSE a."timestamp" END AS label_timestamp,
    CASE WHEN a."timestamp" IS NULL OR r."timestamp" >= a."timestamp"
         THEN r.subject ELSE a.subject END AS label_subject
FROM predictions AS p
LEFT JOIN latest AS r ON r.request_id = p.request_id AND r."row" = p."row"
LEFT JOIN latest AS a ON a.request_id = p.request_id AND a."row" IS NULL""",
        f"""CREATE OR REPLACE VIEW drift_results AS
SELECT model, date, * EXCLUDE (model, date)
FROM read_parquet({drift_results}, union_by_name = true, hive_partitioning = true,
                  hive_types = {{'model': 'VARCHAR', 'date': 'DATE'}})""",
        f"""CREATE OR REPLACE VIEW explanations AS
SELECT model, date, * EXCLUDE (model, date)
FROM read_parquet({explanations}, union_by_name = true, hive_partitioning = true,
                  hive_types = {{'model': 'VARCHAR', 'date': 'DATE'}})""",
        f"""CREATE OR REPLACE VIEW driftgate_catalog AS
SELECT {CATALOG_VERSION} AS version, {sql_string(str(root))} AS root""",
    ]


class Catalog:
    """The catalog file of the store at ``root``; cheap to construct, touches no file."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root).resolve()
        self.path = catalog_path(self.root)

    def ensure_layout(self) -> None:
        """Create the trees and their placeholder segments (idempotent)."""
        for table, schema in PLACEHOLDER_SCHEMAS.items():
            ensure_placeholder(self.root, table, schema)

    def is_current(self) -> bool:
        """Whether the catalog exists, is of this version and points at this root.

        Raises ``CatalogBusy`` when another process holds the file open read-write.
        """
        if not self.path.exists():
            return False
        try:
            con = _open_readonly(self.path)
        except duckdb.Error:  # not a DuckDB file (say, truncated): rebuild it
            return False
        with con:
            return _describes(con, self)

    def ensure(self) -> bool:
        """Refresh the catalog only when it is not current; True when it was rewritten."""
        self.ensure_layout()
        if self.is_current():
            return False
        self.refresh()
        return True

    def refresh(self) -> None:
        """(Re)create every view: build a new catalog in staging, then swap it in.

        Safe while readers hold the catalog open read-only: they keep the old file until
        they reconnect. Raises ``CatalogBusy`` when a process holds it open read-write
        (its write-ahead log would be replayed into the new file).
        """
        self.ensure_layout()
        if self.path.with_name(self.path.name + ".wal").exists():
            raise CatalogBusy(
                f"{self.path} is open read-write by another process (a .wal file exists): "
                "close it; analysts should open it read-only (duckdb -readonly)"
            )
        set_aside_damaged(self.root, self._build)

    def _build(self) -> None:
        """Create the views in a staged file, and swap it in (views bind: they read every
        segment's schema, so a damaged segment fails this; see ``refresh``)."""
        staged = staging_file(self.root, ".duckdb")
        try:
            con = duckdb.connect(str(staged))
            try:
                for statement in view_statements(self.root):
                    con.execute(statement)
            finally:
                con.close()
            publish(staged, self.path)
        finally:
            staged.unlink(missing_ok=True)
            staged.with_name(staged.name + ".wal").unlink(missing_ok=True)


def _open_readonly(path: Path, attempts: int = 1) -> duckdb.DuckDBPyConnection:
    """Open ``path`` read-only, trying ``attempts`` times while another process holds a
    write lock on it (raises ``CatalogBusy`` when it still does)."""
    delay = 0.01
    for attempt in range(attempts):
        try:
            return duckdb.connect(str(path), read_only=True)
        except duckdb.IOException as exc:
            if "lock" not in str(exc).lower():
                raise
            if attempt == attempts - 1:
                raise CatalogBusy(
                    f"cannot open {path} read-only: {exc}. Another process holds it "
                    "read-write; analysts should open it read-only (duckdb -readonly)"
                ) from exc
            time.sleep(delay)
            delay = min(delay * 2, 0.25)
    raise AssertionError("unreachable")


def connect_readonly(root: Path) -> duckdb.DuckDBPyConnection:
    """An analyst's connection to the store's catalog, sandboxed to the store's files.

    Creates (or updates) the catalog first when the store has none, or one built for
    another root (a store that was moved or copied). Queries may read the store's
    segments through the views; reading other files, ATTACH, INSTALL/LOAD and changing
    settings are refused (``duckdb.PermissionException`` / ``InvalidInputException``).
    The sandbox still lets COPY ... TO write inside the store: ``run_sql`` refuses COPY,
    and EXPLAIN ANALYZE of anything but a SELECT (it runs what it explains).
    """
    catalog = Catalog(root)
    if not catalog.path.exists():
        catalog.ensure()
    try:
        con = _sandboxed(catalog)
    except duckdb.IOException as exc:  # not a DuckDB file (truncated, overwritten)
        log.warning("the catalog %s cannot be opened (%s); rebuilding it", catalog.path, exc)
        catalog.refresh()  # it holds views only: nothing is lost
        con = _sandboxed(catalog)
    if _describes(con, catalog):
        return con
    con.close()
    try:
        catalog.ensure()
    except (OSError, CatalogBusy) as exc:
        log.warning("could not update the catalog %s, using it as it is: %s", catalog.path, exc)
    return _sandboxed(catalog)


def _describes(con: duckdb.DuckDBPyConnection, catalog: Catalog) -> bool:
    try:
        found = con.execute("SELECT version, root FROM driftgate_catalog").fetchall()
    except duckdb.Error:
        return False
    return found == [(CATALOG_VERSION, str(catalog.root))]


def _sandboxed(catalog: Catalog) -> duckdb.DuckDBPyConnection:
    allowed = str(catalog.root) + "/"
    with _CONNECT_LOCK:
        con = _open_readonly(catalog.path, _CONNECT_ATTEMPTS)
        try:
            _apply_sandbox(con, allowed)
        except BaseException:
            con.close()
            raise
    return con


def _apply_sandbox(con: duckdb.DuckDBPyConnection, allowed: str) -> None:
    settings = (
        f"SET allowed_directories = [{sql_string(allowed)}]",
        "SET enable_external_access = false",
        "SET lock_configuration = true",
    )
    for statement in settings:
        try:
            con.execute(statement)
        except duckdb.InvalidInputException:
            # Another connection of this process to the same file already locked the
            # shared instance; the checks below make sure that it is our sandbox.
            break
    rows = con.execute(
        "SELECT current_setting('enable_external_access'), "
        "current_setting('lock_configuration'), current_setting('allowed_directories')"
    ).fetchall()
    row = rows[0] if rows else None
    if row is None or row[0] is not False or row[1] is not True or allowed not in row[2]:
        raise PermissionError(f"could not sandbox the connection to the catalog: {row}")

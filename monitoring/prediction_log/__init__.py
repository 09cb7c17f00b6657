"""The prediction log store: every prediction and label, as Parquet, queryable with SQL.

The flow, left to right::

    gateway ──PredictionRecord──▶ PredictionLogWriter ──Parquet──▶ <store>/predictions/...
    feedback API ─FeedbackRecord─▶ (queue, thread)     segments    <store>/feedback/...
                                                                        ▲
    analysts, drift jobs ── connect_readonly / run_sql ── driftgate.duckdb (views)
    background jobs ── compact, enforce_retention ──────────────────────┘

Modules: ``records`` (the values and settings), ``segments`` (records to Arrow, pure),
``shapes`` (one shape per feature column, pure), ``shape_registry`` (those shapes agreed
by every writer process, in the store), ``layout`` (paths, atomic writes), ``writer``
(the collector thread), ``catalog`` (views, sandboxed connections), ``sql`` (guarded
read-only queries), ``maintenance`` (compaction, retention). Errors: ``SqlRefused`` (not
run: not a single read-only statement), ``SqlError`` (DuckDB failed or the time limit
hit), ``CatalogBusy`` (the catalog file is held read-write by another process).
"""

from __future__ import annotations

from monitoring.prediction_log.catalog import Catalog, CatalogBusy, connect_readonly
from monitoring.prediction_log.maintenance import (
    CompactedPartition,
    CompactionReport,
    RetentionReport,
    compact,
    enforce_retention,
)
from monitoring.prediction_log.quarantine import set_aside_damaged
from monitoring.prediction_log.records import FeedbackRecord, LogSettings, PredictionRecord
from monitoring.prediction_log.sql import SqlError, SqlRefused, SqlResult, run_sql
from monitoring.prediction_log.writer import PredictionLogWriter

__all__ = [
    "Catalog",
    "CatalogBusy",
    "CompactedPartition",
    "CompactionReport",
    "FeedbackRecord",
    "LogSettings",
    "PredictionLogWriter",
    "PredictionRecord",
    "RetentionReport",
    "SqlError",
    "SqlRefused",
    "SqlResult",
    "compact",
    "connect_readonly",
    "enforce_retention",
    "run_sql",
    "set_aside_damaged",
]

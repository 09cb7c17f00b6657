"""A drift run as rows in the store (``drift_results``) and as the latest-results entry the
gauges read: the durable outputs of ``drift.job``, after it has built a ``DriftRun``.

    <store>/drift_results/model=<m>/date=<YYYY-MM-DD>/<utc-timestamp>-<uuid>.parquet

One row per finding, columns ``RESULT_SCHEMA``; ``model`` and ``date`` are the Hive
partition keys of the folder, as in the predictions tree (model percent-encoded, date the
run's UTC date). The catalog's ``drift_results`` view reads this tree; a schema-only
placeholder under the Hive null partition (``ensure_results_placeholder``) keeps its glob
matching before the first run.

``publish_latest`` merges the run into ``<store>/latest/drift.json`` (format in
``monitoring.job_results``), which ``JobResultsCollector`` turns into gauges at scrape time.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pyarrow as pa  # type: ignore[import-untyped]  # no stubs; see pyproject mypy overrides

from drift.findings import DriftRun
from monitoring.job_results import update_latest
from monitoring.prediction_log.layout import (
    DRIFT_RESULTS,
    NULL_PARTITION,
    PLACEHOLDER_NAME,
    segment_name,
    write_segment,
)
from monitoring.prediction_log.segments import DRIFT_RESULT_SCHEMA

#: The columns of one row (the catalog's placeholder uses the same schema).
RESULT_SCHEMA = DRIFT_RESULT_SCHEMA

__all__ = ["DRIFT_RESULTS", "RESULT_SCHEMA", "publish_latest", "result_table", "write_results"]

#: The schema of the tree's placeholder segment.
PLACEHOLDER = RESULT_SCHEMA


def as_utc(timestamp: datetime) -> datetime:
    """``timestamp`` in UTC; a naive timestamp is taken as UTC (as the log does)."""
    if timestamp.tzinfo is None:
        return timestamp.replace(tzinfo=UTC)
    return timestamp.astimezone(UTC)


def results_partition_dir(store: Path, model: str | None, day: str | None) -> Path:
    """The folder of one partition (``None``: the Hive null partition), encoded like
    ``layout.partition_dir`` encodes the predictions tree."""
    model_part = quote(model, safe="") if model is not None else NULL_PARTITION
    return store / DRIFT_RESULTS / f"model={model_part}" / f"date={day or NULL_PARTITION}"


def result_table(run: DriftRun) -> pa.Table:
    """One row per finding of ``run``, in ``RESULT_SCHEMA``."""
    findings = run.findings
    count = len(findings)

    def repeated(value: Any) -> list[Any]:
        return [value] * count

    columns = {
        "timestamp": repeated(as_utc(run.timestamp)),
        "run_id": repeated(run.run_id),
        "version": repeated(run.version),
        "arm": repeated(run.arm),
        "feature": [f.feature for f in findings],
        "column": [f.column for f in findings],
        "kind": [f.kind for f in findings],
        "role": [f.role for f in findings],
        "statistic": [f.result.statistic for f in findings],
        "score": [float(f.result.score) for f in findings],
        "p_value": [_optional_float(f.result.p_value) for f in findings],
        "threshold": [float(f.result.threshold) for f in findings],
        "drifted": [bool(f.result.drifted) for f in findings],
        "psi": [_optional_float(f.psi) for f in findings],
        "window_kind": repeated(run.window.kind),
        "window_start": repeated(as_utc(run.window.start)),
        "window_end": repeated(as_utc(run.window.end)),
        "window_rows": repeated(run.window.rows),
        "reference": repeated(run.reference_id),
        "reference_rows": repeated(run.reference_rows),
        "report": repeated(run.report),
        "sql": repeated(run.sql),
        "detail": [f.detail for f in findings],
    }
    return pa.table(
        [pa.array(columns[field.name], field.type) for field in RESULT_SCHEMA],
        schema=RESULT_SCHEMA,
    )


def write_results(store: Path, run: DriftRun) -> Path:
    """Write ``run`` as one segment of the ``drift_results`` tree; returns its path."""
    started = as_utc(run.timestamp)
    folder = results_partition_dir(store, run.model, started.date().isoformat())
    final = folder / segment_name(started)
    write_segment(store, result_table(run), final)
    return final


def ensure_results_placeholder(store: Path) -> None:
    """The tree's schema-only segment under the Hive null partition (idempotent)."""
    final = results_partition_dir(store, None, None) / PLACEHOLDER_NAME
    if not final.exists():
        write_segment(store, RESULT_SCHEMA.empty_table(), final)


def latest_key(run: DriftRun) -> str:
    """The run's key in the latest-results file: ``<model>/<version>/<arm>``."""
    return f"{run.model}/{run.version}/{run.arm}"


def latest_entry(run: DriftRun) -> dict[str, Any]:
    """The run as a drift entry of the latest-results file (``monitoring.job_results``).

    JSON has no NaN: a score that is not a number is written as null.
    """
    return {
        "model": run.model,
        "version": run.version,
        "arm": run.arm,
        "timestamp": as_utc(run.timestamp).isoformat(),
        "run_id": run.run_id,
        "report": run.report,
        "window": {
            "kind": run.window.kind,
            "start": as_utc(run.window.start).isoformat(),
            "end": as_utc(run.window.end).isoformat(),
            "rows": int(run.window.rows),
        },
        "features": [
            {
                "feature": f.feature,
                "test": f.result.statistic,
                "score": _finite_or_none(f.result.score),
                "p_value": _finite_or_none(f.result.p_value),
                "threshold": _finite_or_none(f.result.threshold),
                "drifted": bool(f.result.drifted),
            }
            for f in run.findings
        ],
    }


def publish_latest(store: Path, run: DriftRun) -> None:
    """Merge ``run`` into ``<store>/latest/drift.json`` under its model/version/arm key."""
    update_latest(store, "drift", latest_key(run), latest_entry(run))


def _optional_float(value: float | None) -> float | None:
    return None if value is None else float(value)


def _finite_or_none(value: float | None) -> float | None:
    if value is None or not math.isfinite(value):
        return None
    return float(value)

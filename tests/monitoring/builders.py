"""Builders for prediction-log tests: records with sensible defaults, metric samples,
the shapes found in a store's segments."""

from __future__ import annotations

from collections import defaultdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq  # type: ignore[import-untyped]
from prometheus_client import CollectorRegistry

from monitoring.prediction_log import FeedbackRecord, PredictionRecord, run_sql
from monitoring.prediction_log.shapes import Shape, compatible, feature_columns, refine

NOW = datetime(2025, 3, 14, 12, 0, tzinfo=UTC)


def prediction(request_id: str = "req-1", row: int = 0, **fields: Any) -> PredictionRecord:
    """A primary v2 prediction of model ``titanic`` unless ``fields`` say otherwise."""
    values: dict[str, Any] = {
        "timestamp": NOW,
        "route": "titanic",
        "arm": "stable",
        "role": "primary",
        "model": "titanic",
        "version": "1",
        "replica": "http://127.0.0.1:8001",
        "dialect": "v2",
        "status": 200,
        "latency_s": 0.004,
        "trace_id": "0af7651916cd43dd8448eb211c80319c",
        "inputs": {"age": 30, "sex": "male", "fare": 7.25},
        "outputs": {"label": 0, "probability": 0.12},
    }
    values.update(fields)
    return PredictionRecord(request_id=request_id, row=row, **values)


def label(request_id: str, row: int | None, value: Any, **fields: Any) -> FeedbackRecord:
    values: dict[str, Any] = {"timestamp": NOW, "subject": "labeller"}
    values.update(fields)
    return FeedbackRecord(request_id=request_id, row=row, label=value, **values)


def predictions(count: int, prefix: str = "req", **fields: Any) -> list[PredictionRecord]:
    return [prediction(f"{prefix}-{n}", **fields) for n in range(count)]


def block_partition(store: Path) -> Path:
    """Put a file where the writer needs a folder: every write there fails with OSError."""
    blocker = store / "predictions" / "model=titanic"
    blocker.parent.mkdir(parents=True, exist_ok=True)
    blocker.write_text("in the way")
    return blocker


def sample(registry: CollectorRegistry, name: str, **labels: str) -> float:
    value = registry.get_sample_value(name, labels)
    return 0.0 if value is None else value


def log_records(
    registry: CollectorRegistry, table: str, outcome: str, reason: str | None = None
) -> float:
    """``driftgate_log_records_total{table, outcome}``, over every ``reason`` unless one
    is named."""
    return sum(
        found.value
        for metric in registry.collect()
        for found in metric.samples
        if found.name == "driftgate_log_records_total"
        and found.labels["table"] == table
        and found.labels["outcome"] == outcome
        and reason in (None, found.labels.get("reason"))
    )


def query(store: Path, sql: str) -> list[tuple[Any, ...]]:
    """Rows of a read-only query over the store's catalog views."""
    return run_sql(store, sql).rows


#: Fails on row 100,001: after the first batches of rows have streamed.
FAILS_LATE = (
    "SELECT CASE WHEN i > 100000 THEN CAST('x' || i AS INTEGER) ELSE i END AS n "
    "FROM range(200000) t(i)"
)


def segment_shapes(store: Path) -> dict[str, set[Shape]]:
    """Every shape each feature column has across the store's prediction segments."""
    shapes: dict[str, set[Shape]] = defaultdict(set)
    for path in sorted((store / "predictions").glob("*/*/*.parquet")):
        for name, shape in feature_columns(pq.read_schema(path)):
            shapes[name].add(shape)
    return shapes


def fits(shape: Shape, registered: Shape) -> bool:
    """Whether a segment's column of ``shape`` agrees with the registered shape: the same,
    or less specific (all null) and readable with it."""
    return compatible(shape, registered) and refine(registered, shape) == registered

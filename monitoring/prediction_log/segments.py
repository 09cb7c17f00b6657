"""Records to Arrow tables: the column layout of every segment, and nothing else (pure).

A predictions segment has the fixed columns of ``PREDICTION_SCHEMA`` (``model`` and
``date`` are not in the file: they are the Hive partition keys of its folder), then one
column per input ``in_<name>`` and per output ``out_<name>``, typed by pyarrow's inference
over the segment's values: int64, double, string, bool, list<...> for tensor rows, null
when every value is None. A column whose values pyarrow cannot type together (say 1 and
"a") is stored as strings (lists and dicts as JSON) rather than failing the segment, and
dicts are always JSON text. (``shapes`` then keeps each column's list depth stable.)

A feedback segment has ``FEEDBACK_SCHEMA``'s columns with ``label`` typed by inference.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, date, datetime
from typing import Any

import pyarrow as pa  # type: ignore[import-untyped]  # no stubs; see pyproject mypy overrides

from monitoring.prediction_log.layout import DRIFT_RESULTS, EXPLANATIONS, FEEDBACK, PREDICTIONS
from monitoring.prediction_log.records import FeedbackRecord, PredictionRecord

TIMESTAMP = pa.timestamp("us", tz="UTC")

PREDICTION_SCHEMA = pa.schema(
    [
        ("timestamp", TIMESTAMP),
        ("request_id", pa.string()),
        ("row", pa.int32()),
        ("route", pa.string()),
        ("arm", pa.string()),
        ("role", pa.string()),
        ("version", pa.string()),
        ("replica", pa.string()),
        ("dialect", pa.string()),
        ("status", pa.int32()),
        ("latency_s", pa.float64()),
        ("trace_id", pa.string()),
        ("error", pa.string()),
        ("subject", pa.string()),
    ]
)

FEEDBACK_SCHEMA = pa.schema(
    [
        ("timestamp", TIMESTAMP),
        ("request_id", pa.string()),
        ("row", pa.int32()),
        ("label", pa.null()),
        ("subject", pa.string()),
    ]
)

#: One row per test of a drift job run (``drift.results`` writes them).
DRIFT_RESULT_SCHEMA = pa.schema(
    [
        ("timestamp", TIMESTAMP),
        ("run_id", pa.string()),
        ("version", pa.string()),
        ("arm", pa.string()),
        ("feature", pa.string()),
        ("column", pa.string()),
        ("kind", pa.string()),
        ("role", pa.string()),
        ("statistic", pa.string()),
        ("score", pa.float64()),
        ("p_value", pa.float64()),
        ("threshold", pa.float64()),
        ("drifted", pa.bool_()),
        ("psi", pa.float64()),
        ("window_kind", pa.string()),
        ("window_start", TIMESTAMP),
        ("window_end", TIMESTAMP),
        ("window_rows", pa.int64()),
        ("reference", pa.string()),
        ("reference_rows", pa.int64()),
        ("report", pa.string()),
        ("sql", pa.string()),
        ("detail", pa.string()),
    ]
)

#: One row per feature of an explain job run (global importance of a model version).
EXPLANATION_SCHEMA = pa.schema(
    [
        ("timestamp", TIMESTAMP),
        ("run_id", pa.string()),
        ("version", pa.string()),
        ("feature", pa.string()),
        ("method", pa.string()),
        ("scoring", pa.string()),
        ("importance", pa.float64()),
        ("std", pa.float64()),
        ("share", pa.float64()),
        ("rank", pa.int32()),
        ("shift_vs_previous", pa.float64()),
        ("shift_vs_reference", pa.float64()),
        ("rows", pa.int64()),
        ("report", pa.string()),
    ]
)

#: The schema of each tree's placeholder segment (see ``layout``).
PLACEHOLDER_SCHEMAS = {
    PREDICTIONS: PREDICTION_SCHEMA,
    FEEDBACK: FEEDBACK_SCHEMA,
    DRIFT_RESULTS: DRIFT_RESULT_SCHEMA,
    EXPLANATIONS: EXPLANATION_SCHEMA,
}

Record = PredictionRecord | FeedbackRecord
#: (table, model or None, UTC date): the records of one group go into one segment.
GroupKey = tuple[str, str | None, date]


def utc_day(timestamp: datetime) -> date:
    """The UTC date of a timestamp; a naive timestamp is taken as UTC."""
    if timestamp.tzinfo is None:
        return timestamp.date()
    return timestamp.astimezone(UTC).date()


def group_key(record: Record) -> GroupKey:
    """The partition a record goes to: (table, model or None, UTC date)."""
    if isinstance(record, PredictionRecord):
        return (PREDICTIONS, record.model, utc_day(record.timestamp))
    if isinstance(record, FeedbackRecord):
        return (FEEDBACK, None, utc_day(record.timestamp))
    raise TypeError(f"not a prediction-log record: {type(record).__name__}")


def group_records(records: Iterable[Record]) -> dict[GroupKey, list[Record]]:
    """Split records by destination partition, keeping their order within each."""
    groups: dict[GroupKey, list[Record]] = {}
    for record in records:
        key = group_key(record)
        bucket = groups.get(key)
        if bucket is None:
            groups[key] = [record]
        else:
            bucket.append(record)
    return groups


def predictions_table(records: Sequence[PredictionRecord]) -> pa.Table:
    """The Arrow table of one predictions segment (all records of one model and day)."""
    columns: dict[str, pa.Array] = {
        "timestamp": pa.array([r.timestamp for r in records], TIMESTAMP),
        "request_id": pa.array([r.request_id for r in records], pa.string()),
        "row": pa.array([r.row for r in records], pa.int32()),
        "route": pa.array([r.route for r in records], pa.string()),
        "arm": pa.array([r.arm for r in records], pa.string()),
        "role": pa.array([r.role for r in records], pa.string()),
        "version": pa.array([r.version for r in records], pa.string()),
        "replica": pa.array([r.replica for r in records], pa.string()),
        "dialect": pa.array([r.dialect for r in records], pa.string()),
        "status": pa.array([r.status for r in records], pa.int32()),
        "latency_s": pa.array([r.latency_s for r in records], pa.float64()),
        "trace_id": pa.array([r.trace_id for r in records], pa.string()),
        "error": pa.array([r.error for r in records], pa.string()),
        "subject": pa.array([r.subject for r in records], pa.string()),
    }
    inputs = [r.inputs for r in records]
    for name in _ordered_names(inputs):
        columns[f"in_{name}"] = infer_array([values.get(name) for values in inputs])
    outputs = [r.outputs for r in records]
    for name in _ordered_names(outputs):
        columns[f"out_{name}"] = infer_array([values.get(name) for values in outputs])
    return pa.table(columns)


def feedback_table(records: Sequence[FeedbackRecord]) -> pa.Table:
    """The Arrow table of one feedback segment (all records of one day)."""
    return pa.table(
        {
            "timestamp": pa.array([r.timestamp for r in records], TIMESTAMP),
            "request_id": pa.array([r.request_id for r in records], pa.string()),
            "row": pa.array([r.row for r in records], pa.int32()),
            "label": infer_array([r.label for r in records], scalar=True),
            "subject": pa.array([r.subject for r in records], pa.string()),
        }
    )


def infer_array(values: list[Any], *, scalar: bool = False) -> pa.Array:
    """A typed Arrow array for one feature's values, falling back to text.

    Values pyarrow cannot type together become strings; dicts (structs) become JSON
    text, as do lists when ``scalar`` is asked for (labels).
    """
    try:
        array = pa.array(values)
    except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError, TypeError):
        array = None
    if array is None or _has_nested_record(array.type) or (scalar and _is_list(array.type)):
        return pa.array([None if v is None else _as_text(v) for v in values], pa.string())
    return array


def _is_list(data_type: pa.DataType) -> bool:
    return bool(pa.types.is_list(data_type) or pa.types.is_large_list(data_type))


def _has_nested_record(data_type: pa.DataType) -> bool:
    while _is_list(data_type):
        data_type = data_type.value_type
    return bool(pa.types.is_struct(data_type) or pa.types.is_map(data_type))


def _as_text(value: Any) -> str:
    if isinstance(value, str):
        return value
    return json.dumps(value, default=str)


def _ordered_names(mappings: Sequence[Mapping[str, Any]]) -> list[str]:
    """Every key in first-seen order (distinct key tuples first: usually there is one)."""
    shapes = dict.fromkeys(map(tuple, mappings))
    return list(dict.fromkeys(name for shape in shapes for name in shape))

"""Records become Arrow tables with the documented columns (pure: no disk)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pyarrow as pa  # type: ignore[import-untyped]

from monitoring.prediction_log.segments import (
    PREDICTION_SCHEMA,
    feedback_table,
    group_records,
    predictions_table,
)
from tests.monitoring.builders import NOW, label, prediction


def test_a_predictions_segment_has_the_fixed_columns_then_one_typed_column_per_feature() -> None:
    table = predictions_table(
        [
            prediction("a", inputs={"age": 30, "sex": "male", "pixels": [0.0, 0.5]}),
            prediction("b", inputs={"age": 41, "sex": None, "pixels": [1.0, 0.25]}),
        ]
    )
    fixed = PREDICTION_SCHEMA.names
    assert table.schema.names[: len(fixed)] == fixed
    assert "model" not in table.schema.names  # the partition key lives in the path
    assert table.schema.field("timestamp").type == pa.timestamp("us", tz="UTC")
    assert table.schema.field("in_age").type == pa.int64()
    assert table.schema.field("in_sex").type == pa.string()
    assert table.schema.field("in_pixels").type == pa.list_(pa.float64())
    assert table.schema.field("out_probability").type == pa.float64()
    assert table.column("in_sex").to_pylist() == ["male", None]


def test_features_missing_from_some_rows_are_null_and_all_null_features_are_kept() -> None:
    table = predictions_table(
        [prediction("a", inputs={"age": 30}), prediction("b", inputs={"fare": 7.5, "x": None})]
    )
    assert table.column("in_age").to_pylist() == [30, None]
    assert table.column("in_fare").to_pylist() == [None, 7.5]
    assert table.schema.field("in_x").type == pa.null()


def test_ints_and_floats_of_one_feature_become_double_and_mixed_kinds_become_text() -> None:
    table = predictions_table(
        [
            prediction("a", inputs={"fare": 7, "odd": 1, "tensor": [1, 2]}),
            prediction("b", inputs={"fare": 7.5, "odd": "one", "tensor": "n/a"}),
        ]
    )
    assert table.column("in_fare").to_pylist() == [7.0, 7.5]
    assert table.column("in_odd").to_pylist() == ["1", "one"]
    assert table.column("in_tensor").to_pylist() == ["[1, 2]", "n/a"]


def test_timestamps_are_stored_in_utc_and_decide_the_date_partition() -> None:
    late_in_new_york = datetime(2025, 3, 14, 22, 30, tzinfo=timezone(timedelta(hours=-4)))
    groups = group_records(
        [
            prediction("a", timestamp=late_in_new_york),
            prediction("b", model="digits"),
            prediction("c"),
            label("c", None, 1),
        ]
    )
    assert {key: [r.request_id for r in records] for key, records in groups.items()} == {
        ("predictions", "titanic", datetime(2025, 3, 15).date()): ["a"],
        ("predictions", "digits", NOW.date()): ["b"],
        ("predictions", "titanic", NOW.date()): ["c"],
        ("feedback", None, NOW.date()): ["c"],
    }
    stored = predictions_table([prediction("a", timestamp=late_in_new_york)])
    assert stored.column("timestamp").to_pylist()[0] == datetime(2025, 3, 15, 2, 30, tzinfo=UTC)


def test_a_feedback_segment_types_its_label_and_allows_a_request_wide_row() -> None:
    table = feedback_table([label("a", None, 1), label("b", 2, 0, subject=None)])
    assert table.schema.names == ["timestamp", "request_id", "row", "label", "subject"]
    assert table.column("row").to_pylist() == [None, 2]
    assert table.schema.field("label").type == pa.int64()

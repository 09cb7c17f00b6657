"""A feature whose shape changes (scalar vs list, list depth) never breaks the views."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa  # type: ignore[import-untyped]

from monitoring.prediction_log import LogSettings, PredictionLogWriter
from monitoring.prediction_log.shapes import Rename, compatible, place, shape_of
from tests.monitoring.builders import label, prediction, query


def test_shapes_duckdb_can_read_as_one_column() -> None:
    scalar, floats, matrix = (
        shape_of(t) for t in (pa.int64(), pa.list_(pa.float64()), pa.list_(pa.list_(pa.float64())))
    )
    assert compatible(scalar, shape_of(pa.string()))
    assert compatible(floats, shape_of(pa.list_(pa.string())))
    assert compatible(shape_of(pa.null()), matrix)
    assert compatible(shape_of(pa.list_(pa.null())), matrix)
    assert not compatible(scalar, floats)
    assert not compatible(floats, matrix)


SCALAR, LIST, NULL = (0, False), (1, False), (0, True)


def test_place_keeps_known_names_and_learns_only_what_is_new_or_more_specific() -> None:
    placement = place({"in_a": SCALAR, "in_b": NULL}, [("in_a", SCALAR), ("in_b", NULL)])
    assert placement.names == ("in_a", "in_b")
    assert placement.learnt == {} and placement.renames == ()
    placement = place({"in_b": NULL}, [("in_b", LIST), ("in_c", SCALAR)])
    assert placement.names == ("in_b", "in_c")
    assert placement.learnt == {"in_b": LIST, "in_c": SCALAR}


def test_place_renames_a_conflicting_shape_until_a_name_fits() -> None:
    placement = place({"in_a": SCALAR, "in_a__list": SCALAR}, [("in_a", LIST), ("in_b", SCALAR)])
    assert placement.names == ("in_a__list__list", "in_b")
    assert placement.renames == (Rename("in_a", LIST, SCALAR, "in_a__list__list"),)
    assert placement.learnt == {"in_a__list__list": LIST, "in_b": SCALAR}


def test_place_never_gives_two_columns_of_a_table_one_name() -> None:
    # "age" as a list goes to in_age__list, which this table also holds under its own name.
    placement = place({"in_age": SCALAR}, [("in_age", LIST), ("in_age__list", LIST)])
    assert placement.names == ("in_age__list", "in_age__list__list")


def test_a_bad_request_with_a_list_for_a_scalar_feature_gets_its_own_column(
    writer: PredictionLogWriter, store: Path
) -> None:
    writer.submit([prediction("good", inputs={"age": 30})])
    writer.flush()
    writer.submit([prediction("bad", status=400, inputs={"age": [30, 31]})])
    writer.flush()
    rows = query(store, "SELECT request_id, in_age, in_age__list FROM predictions ORDER BY 1")
    assert rows == [("bad", None, [30, 31]), ("good", 30, None)]


def test_models_sharing_a_feature_name_with_different_depths_share_the_views(
    writer: PredictionLogWriter, store: Path
) -> None:
    writer.submit([prediction("flat", model="mnist-flat", inputs={"input": [0.0, 1.0]})])
    writer.flush()
    writer.submit([prediction("image", model="digits", inputs={"input": [[0.0], [1.0]]})])
    writer.flush()
    rows = query(store, "SELECT model, in_input, in_input__list2 FROM predictions ORDER BY 1")
    assert rows == [("digits", None, [[0.0], [1.0]]), ("mnist-flat", [0.0, 1.0], None)]


def test_a_restarted_writer_learns_the_shapes_already_in_the_store(store: Path) -> None:
    first = PredictionLogWriter(store, LogSettings())
    first.submit([prediction("a", inputs={"x": 1.5})])
    first.close()
    second = PredictionLogWriter(store, LogSettings())
    second.submit([prediction("b", inputs={"x": [1.5]})])
    second.close()
    assert query(store, "SELECT request_id, in_x, in_x__list FROM predictions ORDER BY 1") == [
        ("a", 1.5, None),
        ("b", None, [1.5]),
    ]


def test_dict_values_and_list_labels_are_stored_as_json_text(
    writer: PredictionLogWriter, store: Path
) -> None:
    writer.submit([prediction("a", outputs={"scores": {"cat": 0.9}})])
    writer.submit([label("a", 0, [1, 2])])
    writer.flush()
    assert query(store, "SELECT out_scores FROM predictions") == [('{"cat": 0.9}',)]
    assert query(store, "SELECT label FROM feedback") == [("[1, 2]",)]

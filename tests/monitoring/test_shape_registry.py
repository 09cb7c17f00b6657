"""The store's shape registry: the first shape registered for a column wins, other writers
adopt it, an old store or a corrupt file gets a registry rebuilt from its segments, and
columns a writer already knows never wait for the registry's lock.

Two ``PredictionLogWriter`` objects in one process stand for two gateway processes: they
share nothing but the store (test_shape_concurrency.py runs real processes).
"""

from __future__ import annotations

import json
import logging
import threading
from datetime import timedelta
from pathlib import Path

import pyarrow as pa  # type: ignore[import-untyped]
import pyarrow.parquet as pq  # type: ignore[import-untyped]
import pytest

from monitoring.prediction_log import LogSettings, PredictionLogWriter
from monitoring.prediction_log.layout import shapes_path, store_lock
from monitoring.prediction_log.shape_registry import (
    LOCK_NAME,
    ShapeRegistry,
    shapes_in_segments,
)
from tests.monitoring.builders import NOW, fits, prediction, query, segment_shapes

SCALAR, LIST = (0, False), (1, False)


def warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    """The warnings logged; what else was logged depends on the logging levels that other
    tests of the session left (INFO lines such as a registry being built)."""
    return [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]


def log_one(writer: PredictionLogWriter, request_id: str, **inputs: object) -> None:
    writer.submit([prediction(request_id, inputs=inputs, outputs={})])
    writer.flush()


def registered(store: Path) -> dict[str, tuple[int, bool]]:
    return ShapeRegistry(store).load()


def assert_segments_agree_with_registry(store: Path) -> None:
    shapes = registered(store)
    for name, found in segment_shapes(store).items():
        assert all(fits(shape, shapes[name]) for shape in found), (name, found, shapes)


def test_the_registry_is_a_small_json_file_at_the_store_root(store: Path) -> None:
    writer = PredictionLogWriter(store, LogSettings())
    log_one(writer, "a", age=30, pixels=[[0.5]], note=None)
    assert json.loads(shapes_path(store).read_text()) == {
        "format": 1,
        "columns": {
            "in_age": {"depth": 0, "nulls_only": False},
            "in_note": {"depth": 0, "nulls_only": True},
            "in_pixels": {"depth": 2, "nulls_only": False},
        },
    }
    assert shapes_path(store) == store / "column_shapes.json"


def test_the_first_writer_to_register_a_column_keeps_it_and_another_adopts_it(
    store: Path, caplog: pytest.LogCaptureFixture
) -> None:
    first, second = (
        PredictionLogWriter(store, LogSettings()),
        PredictionLogWriter(store, LogSettings()),
    )
    log_one(first, "first-0", age=30)
    log_one(second, "second-0", age=31)  # both have read the registry by now
    log_one(first, "first-1", dose=2.5)  # a column new to both
    with caplog.at_level(logging.WARNING, logger="monitoring.prediction_log.shapes"):
        log_one(second, "second-1", dose=[2.5, 5.0])
    assert warnings(caplog) == [
        "prediction log: in_dose has shape list here but scalar registered by another "
        "writer; stored as in_dose__list"
    ]
    assert query(
        store, "SELECT request_id, in_dose, in_dose__list FROM predictions ORDER BY 1"
    ) == [
        ("first-0", None, None),
        ("first-1", 2.5, None),
        ("second-0", None, None),
        ("second-1", None, [2.5, 5.0]),
    ]
    assert registered(store) == {"in_age": SCALAR, "in_dose": SCALAR, "in_dose__list": LIST}
    # The adopted shape sticks: the second writer's next lists need no new agreement.
    log_one(second, "second-2", dose=[1.0])
    assert query(store, "SELECT in_dose__list FROM predictions WHERE request_id = 'second-2'") == [
        ([1.0],)
    ]


def test_a_more_specific_shape_found_by_another_writer_is_agreed_too(store: Path) -> None:
    # An all-null column fits any shape; once one writer logs lists in it, another writer
    # that has only seen nulls must not log scalars under the same name.
    first, second = (
        PredictionLogWriter(store, LogSettings()),
        PredictionLogWriter(store, LogSettings()),
    )
    log_one(first, "first-0", dose=None)
    log_one(second, "second-0", dose=None)
    log_one(first, "first-1", dose=[2.5])
    log_one(second, "second-1", dose=2.5)
    assert query(
        store, "SELECT request_id, in_dose, in_dose__scalar FROM predictions ORDER BY 1"
    ) == [
        ("first-0", None, None),
        ("first-1", [2.5], None),
        ("second-0", None, None),
        ("second-1", None, 2.5),
    ]
    assert registered(store) == {"in_dose": LIST, "in_dose__scalar": SCALAR}
    assert_segments_agree_with_registry(store)


def test_columns_a_writer_knows_never_wait_for_the_registry_lock(store: Path) -> None:
    writer = PredictionLogWriter(store, LogSettings(flush_interval_s=0.05))
    writer.start()
    try:
        log_one(writer, "known-0", age=30)
        log_one(writer, "known-1", age=[30])  # learns in_age__list too
        held, release = threading.Event(), threading.Event()

        def hold_the_lock() -> None:
            with store_lock(store, LOCK_NAME):
                held.set()
                release.wait(10)

        holder = threading.Thread(target=hold_the_lock)
        holder.start()
        assert held.wait(5)
        try:
            log_one(writer, "known-2", age=31)
            log_one(writer, "known-3", age=[31])  # a known conflict: renamed, no lock either
            writer.submit([prediction("new-0", inputs={"dose": 1.0}, outputs={})])
            with pytest.raises(TimeoutError):  # a new column waits for the lock
                writer.flush(timeout_s=0.5)
        finally:
            release.set()
            holder.join()
        writer.flush()
    finally:
        writer.close()
    assert query(
        store, "SELECT count(*), count(in_age__list), count(in_dose) FROM predictions"
    ) == [(5, 2, 1)]


def test_a_store_written_before_the_registry_gets_one_built_from_all_its_segments(
    store: Path,
) -> None:
    old = PredictionLogWriter(store, LogSettings())
    old.submit(
        [prediction("old", timestamp=NOW - timedelta(days=3), inputs={"cabin": "C85"}, outputs={})]
    )
    old.submit([prediction("new", inputs={"age": 30}, outputs={})])
    old.close()
    shapes_path(store).unlink()  # what a store written by an older driftgate looks like
    writer = PredictionLogWriter(store, LogSettings())
    # in_cabin is only in an older day's segment, not in the model's newest one.
    log_one(writer, "list", cabin=["C85", "C86"])
    assert registered(store) == {"in_age": SCALAR, "in_cabin": SCALAR, "in_cabin__list": LIST}
    assert query(
        store, "SELECT request_id, in_cabin, in_cabin__list FROM predictions ORDER BY 1"
    ) == [
        ("list", None, ["C85", "C86"]),
        ("new", None, None),
        ("old", "C85", None),
    ]


@pytest.mark.parametrize(
    "content",
    [
        b"{not json",
        b"\xff\xfe",
        b'{"format": 1, "columns": {"in_age": {"depth": "0"}}}',
        b'{"format": 99, "columns": {}}',
        b"[]",
    ],
)
def test_a_corrupt_registry_is_rebuilt_from_the_segments_with_a_warning(
    store: Path, caplog: pytest.LogCaptureFixture, content: bytes
) -> None:
    first = PredictionLogWriter(store, LogSettings())
    log_one(first, "scalar", age=30)
    shapes_path(store).write_bytes(content)
    writer = PredictionLogWriter(store, LogSettings())
    with caplog.at_level(logging.WARNING, logger="monitoring.prediction_log"):
        log_one(writer, "list", age=[30])
    assert any("shape registry is unreadable" in message for message in warnings(caplog))
    assert registered(store) == {"in_age": SCALAR, "in_age__list": LIST}
    assert query(store, "SELECT request_id, in_age, in_age__list FROM predictions ORDER BY 1") == [
        ("list", None, [30]),
        ("scalar", 30, None),
    ]


def test_a_registry_that_cannot_be_locked_costs_no_rows(
    store: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # A lock file that cannot be opened stands for a file system without working locks.
    (store / ".staging" / f"{LOCK_NAME}.lock").mkdir(parents=True)
    writer = PredictionLogWriter(store, LogSettings())
    with caplog.at_level(logging.WARNING, logger="monitoring.prediction_log.shapes"):
        log_one(writer, "a", age=30)
        log_one(writer, "b", age=[30])
    assert "not agreed with other writers" in warnings(caplog)[0]
    assert query(store, "SELECT request_id, in_age, in_age__list FROM predictions ORDER BY 1") == [
        ("a", 30, None),
        ("b", None, [30]),
    ]


def test_segments_already_holding_a_column_in_two_shapes_keep_the_first_and_say_so(
    store: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # Written by two writers before the registry existed: the view is broken already.
    folder = store / "predictions" / "model=titanic" / "date=2025-03-14"
    folder.mkdir(parents=True)
    pq.write_table(pa.table({"in_x": [1.0], "in_y": [None]}), folder / "a.parquet")
    pq.write_table(pa.table({"in_x": [[1.0]], "in_y": [[2.0]]}), folder / "b.parquet")
    with caplog.at_level(logging.WARNING, logger="monitoring.prediction_log.shape_registry"):
        shapes = shapes_in_segments(store)
    assert shapes == {"in_x": SCALAR, "in_y": LIST}
    [message] = warnings(caplog)
    assert message.startswith("prediction log: in_x is a list in ")
    assert registered(store) == {}  # nothing written: only agree() writes

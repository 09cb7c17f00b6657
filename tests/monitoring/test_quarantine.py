"""One damaged segment is set aside; the rest of the store stays readable.

A truncated, empty or garbled segment made every query on ``predictions`` fail, through
``driftgate sql``, ``/admin/sql``, the catalog's rebuild and every drift and explain run.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

import pyarrow as pa  # type: ignore[import-untyped]
import pyarrow.parquet as pq  # type: ignore[import-untyped]
import pytest
from prometheus_client import CollectorRegistry

from monitoring.log_jobs import log_upkeep
from monitoring.prediction_log import Catalog, LogSettings, PredictionLogWriter, SqlError, run_sql
from monitoring.prediction_log.quarantine import quarantine_dir
from tests.monitoring.builders import predictions, sample


def truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def empty(path: Path) -> None:
    path.write_bytes(b"")


def garble_footer(path: Path) -> None:
    """Flip the bytes before the trailing magic: DuckDB's error then names no file."""
    data = bytearray(path.read_bytes())
    for index in range(len(data) - 40, len(data) - 8):
        data[index] ^= 0xFF
    path.write_bytes(bytes(data))


@pytest.fixture
def two_segments(writer: PredictionLogWriter, store: Path) -> list[Path]:
    """Two titanic segments of 3 and 2 predictions, and one digits segment of 4."""
    for batch in (predictions(3), predictions(2, prefix="b"), predictions(4, model="digits")):
        writer.submit(batch)
        writer.flush()
    found = sorted((store / "predictions").rglob("2*.parquet"), key=lambda p: p.stat().st_mtime)
    assert len(found) == 3
    return found


@pytest.mark.parametrize("damage", [truncate, empty, garble_footer])
def test_a_damaged_segment_is_set_aside_and_the_query_answers_from_the_rest(
    store: Path,
    two_segments: list[Path],
    damage: Callable[[Path], None],
    caplog: pytest.LogCaptureFixture,
) -> None:
    damage(two_segments[0])
    with caplog.at_level(logging.WARNING):
        result = run_sql(store, "SELECT model, count(*) FROM predictions GROUP BY 1 ORDER BY 1")
    assert result.rows == [("digits", 4), ("titanic", 2)]
    moved = quarantine_dir(store) / two_segments[0].relative_to(store)
    assert moved.is_file() and not two_segments[0].exists()
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any(str(two_segments[0]) in w and "not readable Parquet" in w for w in warnings)


def test_the_catalog_rebuilds_past_a_damaged_segment(store: Path, two_segments: list[Path]) -> None:
    truncate(two_segments[1])
    Catalog(store).refresh()  # the views bind every segment's schema
    assert (quarantine_dir(store) / two_segments[1].relative_to(store)).is_file()


def test_log_upkeep_sets_a_damaged_segment_aside(store: Path, two_segments: list[Path]) -> None:
    empty(two_segments[0])
    report = log_upkeep(
        store, LogSettings(store=str(store), compact_min_files=2, max_age_days=100_000)
    )
    assert "compaction" in report
    assert run_sql(store, "SELECT count(*) FROM predictions").rows == [(6,)]


def test_a_valid_segment_that_disagrees_is_not_moved(store: Path, two_segments: list[Path]) -> None:
    """Not damage: the query's own error says what clashes, and the file stays."""
    foreign = two_segments[0].with_name("foreign.parquet")
    pq.write_table(pa.table({"status": pa.array(["not a number"])}), foreign)
    with pytest.raises(SqlError):
        run_sql(store, "SELECT sum(status) FROM predictions")
    assert foreign.is_file()
    assert not quarantine_dir(store).exists()


def test_the_quarantined_segments_are_a_gauge(
    writer: PredictionLogWriter, store: Path, registry: CollectorRegistry, two_segments: list[Path]
) -> None:
    assert sample(registry, "driftgate_log_quarantined_segments") == 0
    truncate(two_segments[2])
    run_sql(store, "SELECT count(*) FROM predictions")
    assert sample(registry, "driftgate_log_quarantined_segments") == 1

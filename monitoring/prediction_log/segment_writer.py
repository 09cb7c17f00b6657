"""Writing one flush of the prediction log: its records as Parquet segments.

The writer thread (``monitoring.prediction_log.writer``) takes what is queued as a
``Flush`` and hands it to :meth:`SegmentWriter.write`, which groups the records by
(table, model, UTC date) and writes one segment per group (``layout.write_segment``:
staged, fsynced, renamed into place), prediction columns conformed to the shapes the
store agreed on (``shapes.ColumnShapes``). Every record ends up in the flush's count:
written, or dropped with its reason:

- ``unconvertible``: a record with no destination, or that no segment can hold, is left
  out alone, so one client's bad record never costs the others theirs.
- ``write_failed``: a segment is attempted ``WRITE_ATTEMPTS`` times in all, with backoff
  from ``RETRY_DELAY_S``, then its records are dropped. An attempt fails too when the
  store's path no longer leads to the folder the writer opened (``store_folder``: a mount
  dropped), rather than write where nobody reads.

An unexpected error in one group costs that group only; the writer counts what the flush
neither wrote nor dropped as ``flush_failed``. A flush that ``close()`` abandoned stops
before its next group or attempt.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import TYPE_CHECKING, cast

from monitoring.prediction_log.flush import Flush, table_of
from monitoring.prediction_log.layout import FEEDBACK, partition_dir, segment_name, write_segment
from monitoring.prediction_log.metrics import UNCONVERTIBLE, WRITE_FAILED, LogMetrics
from monitoring.prediction_log.records import FeedbackRecord, PredictionRecord
from monitoring.prediction_log.segments import (
    GroupKey,
    Record,
    feedback_table,
    group_key,
    predictions_table,
)
from monitoring.prediction_log.shape_registry import ShapeRegistry
from monitoring.prediction_log.shapes import ColumnShapes
from monitoring.prediction_log.store_folder import StoreFolder
from monitoring.repeated_errors import RepeatedErrors

if TYPE_CHECKING:
    import pyarrow as pa  # type: ignore[import-untyped]

# The writer's logger: its lines are the prediction log writer's, whichever module writes them.
log = logging.getLogger("monitoring.prediction_log.writer")

#: Attempts at writing one segment, in all (the first and two retries).
WRITE_ATTEMPTS = 3
RETRY_DELAY_S = 0.1


class SegmentWriter:
    """Writes flushes into the store at ``root``, counting every record in ``metrics``."""

    def __init__(self, root: Path, metrics: LogMetrics, folder: StoreFolder | None = None) -> None:
        self.root = root
        self.metrics = metrics
        self.folder = folder or StoreFolder(root)
        self._shapes: ColumnShapes | None = None  # read from the registry at the first write
        #: A store that refuses every write would log each attempt: once a minute instead.
        self._errors = RepeatedErrors(log)

    def write(self, flush: Flush) -> None:
        """One segment per group of the flush; a group that fails unexpectedly (a bug) is
        logged and left to the caller to count, and the other groups are still written."""
        for key, records in self._group(flush).items():
            if flush.abandoned:
                break
            try:
                self._write_group(key, records, flush)
            except Exception:  # a bug costs this group, not the flush's others
                log.exception("prediction log: could not write %d %s records", len(records), key[0])
                self.metrics.write_errors.inc()

    def _group(self, flush: Flush) -> dict[GroupKey, list[Record]]:
        """Records by destination; a record that has none (not a record, no timestamp...)
        is logged, counted as dropped and skipped."""
        groups: dict[GroupKey, list[Record]] = {}
        for batch in flush.batches:
            for record in batch:
                try:
                    key = group_key(record)
                except Exception:
                    log.exception("prediction log: dropped an unusable record %r", record)
                    flush.dropped(table_of(record), 1, UNCONVERTIBLE)
                    continue
                bucket = groups.get(key)
                if bucket is None:
                    groups[key] = [record]
                else:
                    bucket.append(record)
        return groups

    def _write_group(self, key: GroupKey, records: list[Record], flush: Flush) -> None:
        table, model, day = key
        converted = self._usable_rows(table, records, flush)
        if converted is None:
            return
        rows = converted.num_rows
        for attempt in range(1, WRITE_ATTEMPTS + 1):
            if flush.abandoned:  # close() gave up and counted these records
                return
            try:
                self.folder.check()
                arrow = self._conformed(table, converted)
                final = partition_dir(self.root, table, model, day) / segment_name()
                write_segment(self.root, arrow, final)
            except Exception:
                self.metrics.write_errors.inc()
                self._errors.exception(
                    "prediction log: writing %d %s records failed (attempt %d of %d)",
                    rows,
                    table,
                    attempt,
                    WRITE_ATTEMPTS,
                )
                if attempt < WRITE_ATTEMPTS:
                    time.sleep(RETRY_DELAY_S * 2 ** (attempt - 1))
                continue
            flush.written(table, rows)
            self.metrics.segments.labels(table).inc()
            return
        self._errors.error(
            ("dropped", table),
            "prediction log: dropped %d %s records after %d failed attempts",
            rows,
            table,
            WRITE_ATTEMPTS,
        )
        flush.dropped(table, rows, WRITE_FAILED)

    def _usable_rows(self, table: str, records: list[Record], flush: Flush) -> pa.Table | None:
        """The group as an Arrow table. A record that cannot be converted on its own (a
        value no column type holds) is logged, counted as dropped and left out, so that one
        client's bad record never costs the others theirs; retrying would not help it."""
        try:
            return _arrow_table(table, records)
        except Exception:
            usable: list[Record] = []
            for record in records:
                try:
                    _arrow_table(table, [record])
                except Exception:
                    log.exception("prediction log: dropped an unconvertible record %r", record)
                    flush.dropped(table, 1, UNCONVERTIBLE)
                else:
                    usable.append(record)
            return _arrow_table(table, usable) if usable else None

    def _conformed(self, table: str, converted: pa.Table) -> pa.Table:
        """Prediction columns named and shaped as the store agreed (``ColumnShapes``)."""
        if table == FEEDBACK:
            return converted
        if self._shapes is None:
            registry = ShapeRegistry(self.root)
            self._shapes = ColumnShapes(registry, registry.load())
        return self._shapes.conform(converted)


def _arrow_table(table: str, records: list[Record]) -> pa.Table:
    if table == FEEDBACK:
        return feedback_table(cast(list[FeedbackRecord], records))
    return predictions_table(cast(list[PredictionRecord], records))

"""The records one flush of the prediction-log writer took from its queue, until each is
written or counted as dropped.

The writer thread settles them group by group (``written``, ``dropped``). Whatever is
left unsettled when the flush ends, however it ends, ``drop_rest`` counts as dropped, so
that no record leaves the queue uncounted. ``abandon`` is ``close()`` giving up from
another thread: what is left is counted as dropped then (``shutdown``), and from then on
nothing more is counted for this flush, so no record is counted twice. ``written_count``
and ``failed_count`` (records its failed writes dropped: ``write_failed``,
``flush_failed``) tell the writer's ``WriteOutage`` whether writing works.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Sequence

from monitoring.prediction_log.layout import FEEDBACK, PREDICTIONS
from monitoring.prediction_log.metrics import (
    FLUSH_FAILED,
    SHUTDOWN,
    WRITE_FAILED,
    DropReason,
    LogMetrics,
)
from monitoring.prediction_log.records import FeedbackRecord
from monitoring.prediction_log.segments import Record


class Flush:
    def __init__(self, metrics: LogMetrics, batches: list[Sequence[Record]]) -> None:
        self.metrics = metrics
        self.batches = batches
        self.count = sum(len(batch) for batch in batches)
        self._settled: dict[str, int] = {}
        self.written_count = 0
        self.failed_count = 0  # dropped because a write failed, not for what they hold
        self._abandoned = False
        self._released = False
        self._lock = threading.Lock()

    @property
    def abandoned(self) -> bool:
        return self._abandoned

    def written(self, table: str, count: int) -> None:
        with self._lock:
            if self._settle(table, count):
                self.written_count += count
                self.metrics.written(table, count)

    def dropped(self, table: str, count: int, reason: DropReason) -> None:
        with self._lock:
            if self._settle(table, count):
                self._count_dropped(table, count, reason)

    def drop_rest(self, reason: DropReason) -> int:
        """Count every record not yet written or dropped as dropped; how many there were."""
        with self._lock:
            return self._drop_rest(reason)

    def abandon(self) -> int:
        """Count what is left as dropped (``shutdown``) and stop counting; how many."""
        with self._lock:
            lost = self._drop_rest(SHUTDOWN)
            self._abandoned = True
            return lost

    def release(self) -> bool:
        """True the first time only: whoever gets it takes the records off the queue depth."""
        with self._lock:
            first, self._released = not self._released, True
            return first

    def _drop_rest(self, reason: DropReason) -> int:
        if self._abandoned:
            return 0
        lost = 0
        records = (record for batch in self.batches for record in batch)
        for table, count in per_table(records).items():
            left = count - self._settled.get(table, 0)
            if left > 0:
                self._settle(table, left)
                self._count_dropped(table, left, reason)
                lost += left
        return lost

    def _count_dropped(self, table: str, count: int, reason: DropReason) -> None:
        if reason in (WRITE_FAILED, FLUSH_FAILED):
            self.failed_count += count
        self.metrics.dropped(table, count, reason)

    def _settle(self, table: str, count: int) -> bool:
        if self._abandoned:
            return False
        self._settled[table] = self._settled.get(table, 0) + count
        return True


def table_of(record: object) -> str:
    """The table a record counts under, even one that is no record at all."""
    return FEEDBACK if isinstance(record, FeedbackRecord) else PREDICTIONS


def per_table(records: Iterable[object]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for record in records:
        table = table_of(record)
        counts[table] = counts.get(table, 0) + 1
    return counts

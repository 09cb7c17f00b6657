"""The collector of the prediction log: a bounded queue drained by one writer thread.

Shaped like OpenTelemetry's ``BatchSpanProcessor``. ``submit`` only appends to an
in-memory queue under a short lock; it never waits for disk, and when ``max_queue``
records are already waiting it drops the batch and counts it (``outcome="dropped"``). A
daemon thread takes everything queued when ``flush_rows`` records are waiting or
``flush_interval_s`` has passed since its last flush, groups it by (table, model, UTC
date), and writes one Parquet segment per group (staged, fsynced, renamed into place).

Loss bounds: ``close()`` (SIGTERM) writes everything accepted; after a SIGKILL, what was
accepted more than about one flush interval (plus one write) earlier is on disk. A failed
write is logged, counted and retried ``WRITE_ATTEMPTS`` times, then the group is dropped
and counted: a broken disk costs records, never the thread or the request path.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, cast

from prometheus_client import CollectorRegistry

from monitoring.prediction_log.catalog import Catalog
from monitoring.prediction_log.layout import (
    FEEDBACK,
    PREDICTIONS,
    partition_dir,
    remove_stale_staging,
    segment_name,
    write_segment,
)
from monitoring.prediction_log.metrics import LogMetrics
from monitoring.prediction_log.quarantine import quarantined_count
from monitoring.prediction_log.records import FeedbackRecord, LogSettings, PredictionRecord
from monitoring.prediction_log.segments import (
    GroupKey,
    Record,
    feedback_table,
    group_key,
    predictions_table,
)
from monitoring.prediction_log.shape_registry import ShapeRegistry
from monitoring.prediction_log.shapes import ColumnShapes

if TYPE_CHECKING:
    import pyarrow as pa  # type: ignore[import-untyped]

log = logging.getLogger(__name__)

WRITE_ATTEMPTS = 3
RETRY_DELAY_S = 0.1
#: Longest wait between two attempts to create the catalog when it is busy.
CATALOG_RETRY_MAX_S = 30.0


class PredictionLogWriter:
    """Collects records from the request path and writes them as Parquet segments."""

    def __init__(
        self, root: Path, settings: LogSettings, registry: CollectorRegistry | None = None
    ) -> None:
        self.root = Path(root).resolve()
        self.settings = settings
        self.catalog = Catalog(self.root)
        self._cond = threading.Condition()
        self._queued: list[Sequence[Record]] = []
        self._queued_rows = 0  # accepted, not yet taken by the writer thread
        self._depth = 0  # accepted, not yet written or dropped
        self._accepted = 0  # records ever accepted
        self._done = 0  # records ever written or dropped after being accepted
        self._flush_requested = False
        self._closed = False
        self._thread: threading.Thread | None = None
        self._write_lock = threading.Lock()
        self._catalog_retry_at: float | None = None
        self._catalog_delay = 0.5
        self._shapes: ColumnShapes | None = None  # read from the registry at the first write
        self.metrics = LogMetrics(
            registry or CollectorRegistry(),
            lambda: self._depth,
            lambda: quarantined_count(self.root),
        )

    def start(self) -> None:
        """Create the store's layout and catalog, then start the writer thread."""
        if self._thread is not None:
            return
        self.root.mkdir(parents=True, exist_ok=True)
        remove_stale_staging(self.root)
        self._catalog_retry_at = time.monotonic()
        self._ensure_catalog()
        self._thread = threading.Thread(target=self._run, name="prediction-log-writer", daemon=True)
        self._thread.start()

    def submit(self, records: Sequence[PredictionRecord | FeedbackRecord]) -> bool:
        """Queue records for writing; never blocks. False: dropped (queue full), counted."""
        count = len(records)
        if count == 0:
            return True
        with self._cond:
            accepted = not self._closed and self._depth + count <= self.settings.max_queue
            if accepted:
                self._queued.append(records if isinstance(records, tuple) else list(records))
                self._queued_rows += count
                self._depth += count
                self._accepted += count
                if self._queued_rows >= self.settings.flush_rows:
                    self._cond.notify_all()
        if not accepted:
            self._count_dropped(records)
        return accepted

    @property
    def queue_depth(self) -> int:
        return self._depth

    def flush(self, timeout_s: float = 10) -> None:
        """Return once everything submitted so far is on disk (or dropped after retries).

        Raises ``TimeoutError`` when that takes longer than ``timeout_s``.
        """
        if self._thread is None or not self._thread.is_alive():
            self._drain_inline()
            return
        with self._cond:
            target = self._accepted
            self._flush_requested = True
            self._cond.notify_all()
            if not self._cond.wait_for(lambda: self._done >= target, timeout_s):
                raise TimeoutError(
                    f"prediction log flush did not finish in {timeout_s:g} s "
                    f"({target - self._done} records still queued)"
                )

    def close(self, timeout_s: float = 30) -> None:
        """Write everything accepted, then stop the thread. Later submits are dropped."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        thread = self._thread
        if thread is None or not thread.is_alive():
            self._drain_inline()
            return
        thread.join(timeout_s)
        if thread.is_alive():
            log.error(
                "prediction log writer did not finish within %g s; %d records not written",
                timeout_s,
                self._depth,
            )

    def _run(self) -> None:
        interval = self.settings.flush_interval_s
        deadline = time.monotonic() + interval
        while True:
            with self._cond:
                while not (
                    self._closed
                    or self._flush_requested
                    or self._queued_rows >= self.settings.flush_rows
                ):
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        break
                    self._cond.wait(remaining)
                batches, self._queued = self._queued, []
                self._queued_rows = 0
                self._flush_requested = False
                closing = self._closed
            deadline = time.monotonic() + interval
            self._write_batches(batches)
            if self._catalog_retry_at is not None and time.monotonic() >= self._catalog_retry_at:
                self._ensure_catalog()
            if closing:
                with self._cond:
                    if not self._queued:
                        return

    def _drain_inline(self) -> None:
        with self._cond:
            batches, self._queued = self._queued, []
            self._queued_rows = 0
        self._write_batches(batches)

    def _write_batches(self, batches: list[Sequence[Record]]) -> None:
        if not batches:
            return
        count = sum(len(batch) for batch in batches)
        started = time.perf_counter()
        try:
            with self._write_lock:
                for key, records in self._group(batches).items():
                    self._write_group(key, records)
        except Exception:  # a bug must cost this batch, never the thread
            log.exception("prediction log: could not write a batch of %d records", count)
            self.metrics.write_errors.inc()
        finally:
            self.metrics.flush_duration.observe(time.perf_counter() - started)
            with self._cond:
                self._depth -= count
                self._done += count
                self._cond.notify_all()

    def _group(self, batches: list[Sequence[Record]]) -> dict[GroupKey, list[Record]]:
        """Records by destination; a record that has none (not a record, no timestamp...)
        is logged, counted as dropped and skipped."""
        groups: dict[GroupKey, list[Record]] = {}
        for batch in batches:
            for record in batch:
                try:
                    key = group_key(record)
                except Exception:
                    log.exception("prediction log: dropped an unusable record %r", record)
                    self._count_dropped([record])
                    continue
                bucket = groups.get(key)
                if bucket is None:
                    groups[key] = [record]
                else:
                    bucket.append(record)
        return groups

    def _write_group(self, key: GroupKey, records: list[Record]) -> None:
        table, model, day = key
        converted = self._usable_rows(table, records)
        if converted is None:
            return
        rows = converted.num_rows
        for attempt in range(1, WRITE_ATTEMPTS + 1):
            try:
                arrow = self._conformed(table, converted)
                final = partition_dir(self.root, table, model, day) / segment_name()
                write_segment(self.root, arrow, final)
            except Exception:
                self.metrics.write_errors.inc()
                log.exception(
                    "prediction log: writing %d %s records failed (attempt %d of %d)",
                    rows,
                    table,
                    attempt,
                    WRITE_ATTEMPTS,
                )
                if attempt < WRITE_ATTEMPTS:
                    time.sleep(RETRY_DELAY_S * 2 ** (attempt - 1))
                continue
            self.metrics.records.labels(table, "written").inc(rows)
            self.metrics.segments.labels(table).inc()
            return
        log.error("prediction log: dropped %d %s records after retries", rows, table)
        self.metrics.records.labels(table, "dropped").inc(rows)

    def _usable_rows(self, table: str, records: list[Record]) -> pa.Table | None:
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
                    self.metrics.records.labels(table, "dropped").inc()
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

    def _ensure_catalog(self) -> None:
        """Create or update the catalog; when that fails, retry later with backoff."""
        try:
            self.catalog.ensure()
        except Exception as exc:
            log.warning("prediction log catalog not updated, will retry: %s", exc)
            self._catalog_retry_at = time.monotonic() + self._catalog_delay
            self._catalog_delay = min(self._catalog_delay * 2, CATALOG_RETRY_MAX_S)
            return
        self._catalog_retry_at = None

    def _count_dropped(self, records: Sequence[Record]) -> None:
        feedback = sum(1 for record in records if isinstance(record, FeedbackRecord))
        if feedback:
            self.metrics.records.labels(FEEDBACK, "dropped").inc(feedback)
        if len(records) - feedback:
            self.metrics.records.labels(PREDICTIONS, "dropped").inc(len(records) - feedback)


def _arrow_table(table: str, records: list[Record]) -> pa.Table:
    if table == FEEDBACK:
        return feedback_table(cast(list[FeedbackRecord], records))
    return predictions_table(cast(list[PredictionRecord], records))

"""The collector of the prediction log: a bounded queue drained by one writer thread.

Shaped like OpenTelemetry's ``BatchSpanProcessor``. ``submit`` only appends to an
in-memory queue under a short lock; it never waits for disk, and when ``max_queue``
records (``log.max_queued_rows``) are already waiting it drops the batch and counts it
(``outcome="dropped"``). A daemon thread takes everything queued when ``flush_rows``
records are waiting or ``flush_interval_s`` has passed since its last flush, groups it by
(table, model, UTC date), and writes one Parquet segment per group (staged, fsynced,
renamed into place: the ``SegmentWriter`` of ``monitoring.prediction_log.segment_writer``).

Loss bounds: ``close()`` (SIGTERM) writes everything accepted; after a SIGKILL, what was
accepted more than about one flush interval (plus one write) earlier is on disk. A segment
write is attempted ``WRITE_ATTEMPTS`` times in all, then its records are dropped: a broken
disk costs records, never the thread or the request path.

Every record ``submit`` is given is counted once in ``driftgate_log_records_total``:
written, or dropped with a ``reason`` (``metrics.DropReason``), and every drop is logged
(those of the request path at most once a minute). The ways to lose records:

- ``queue_full`` / ``closed``: ``submit`` refuses them (``max_queue`` waiting; closed).
- ``unconvertible``: a record no segment can hold, left out alone; retrying cannot help.
- ``write_failed``: the segment's last attempt failed (disk full, permissions, the store's
  mount gone: ``store_folder``). The first flush that writes again after such failures
  logs one line summing up the outage (``outage.WriteOutage``).
- ``flush_failed``: an unexpected error outside the retried write (a bug): it costs that
  group only, the flush's other groups are still written. Whatever a flush took from the
  queue and neither wrote nor dropped is counted here when it ends, however it ends.
- ``shutdown``: ``close()`` gave up waiting (its timeout) with records not yet written; a
  write under way at that moment may still land, counted as dropped all the same.

Nothing but ``close()`` ends the writer thread: an error that escapes a flush (even
``SystemExit``, which a thread otherwise dies of without a word) is logged and the
thread goes on, or the writer would accept records that nobody writes.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence
from pathlib import Path

from prometheus_client import CollectorRegistry

from monitoring.prediction_log.catalog import Catalog
from monitoring.prediction_log.flush import Flush, per_table
from monitoring.prediction_log.layout import remove_stale_staging
from monitoring.prediction_log.metrics import (
    CLOSED,
    FLUSH_FAILED,
    QUEUE_FULL,
    DropReason,
    LogMetrics,
)
from monitoring.prediction_log.outage import WriteOutage
from monitoring.prediction_log.quarantine import quarantined_count
from monitoring.prediction_log.records import FeedbackRecord, LogSettings, PredictionRecord
from monitoring.prediction_log.segment_writer import RETRY_DELAY_S, SegmentWriter
from monitoring.prediction_log.segments import Record
from monitoring.prediction_log.store_folder import StoreFolder

log = logging.getLogger(__name__)

#: Records dropped by ``submit`` are logged at most this often (it is the request path).
DROP_LOG_INTERVAL_S = 60.0
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
        self._flushing: Flush | None = None  # taken from the queue, being written
        self._drops_unlogged = 0  # refused by submit since the last warning
        self._next_drop_log = 0.0
        self._thread: threading.Thread | None = None
        self._write_lock = threading.Lock()
        self._catalog_retry_at: float | None = None
        self._catalog_delay = 0.5
        self.metrics = LogMetrics(
            registry or CollectorRegistry(),
            lambda: self._depth,
            lambda: quarantined_count(self.root),
        )
        self.folder = StoreFolder(self.root)
        self._outage = WriteOutage()
        self.segment_writer = SegmentWriter(self.root, self.metrics, self.folder)

    def start(self) -> None:
        """Create the store's layout and catalog, then start the writer thread."""
        if self._thread is not None:
            return
        self.folder.open()
        remove_stale_staging(self.root)
        self._catalog_retry_at = time.monotonic()
        self._ensure_catalog()
        self._thread = threading.Thread(target=self._run, name="prediction-log-writer", daemon=True)
        self._thread.start()

    def writes_failing_for(self) -> float | None:
        """Seconds the store has refused this writer's writes, while it still does (a write
        failed within ``outage.SETTLE_S``); None while writing works. Feedback, which its
        sender can send again, is refused meanwhile rather than queued to be dropped."""
        return self._outage.failing_for(time.monotonic())

    def submit(self, records: Sequence[PredictionRecord | FeedbackRecord]) -> bool:
        """Queue records for writing; never blocks. False: dropped (queue full), counted."""
        count = len(records)
        if count == 0:
            return True
        report = 0
        with self._cond:
            closed = self._closed
            accepted = not closed and self._depth + count <= self.settings.max_queue
            if accepted:
                self._queued.append(records if isinstance(records, tuple) else list(records))
                self._queued_rows += count
                self._depth += count
                self._accepted += count
                if self._queued_rows >= self.settings.flush_rows:
                    self._cond.notify_all()
            else:
                self._drops_unlogged += count
                now = time.monotonic()
                if now >= self._next_drop_log:
                    report, self._drops_unlogged = self._drops_unlogged, 0
                    self._next_drop_log = now + DROP_LOG_INTERVAL_S
        if not accepted:
            reason = CLOSED if closed else QUEUE_FULL
            self._count_dropped(records, reason)
            if report:
                log.warning(
                    "prediction log: dropped %d records (%s: %d waiting, max_queued_rows %d); "
                    "drops in the next %g s are counted, not logged",
                    report,
                    "the writer is closed" if closed else "its queue is full",
                    self._depth,
                    self.settings.max_queue,
                    DROP_LOG_INTERVAL_S,
                )
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
        """Write everything accepted, then stop the thread. Later submits are dropped.

        When that takes longer than ``timeout_s``, what is not written yet is counted as
        dropped (``shutdown``) and logged, and the thread stops trying.
        """
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        thread = self._thread
        if thread is None or not thread.is_alive():
            self._drain_inline()
            return
        thread.join(timeout_s)
        if thread.is_alive():
            self._abandon(timeout_s)
        ongoing = self._outage.ongoing(time.monotonic())
        if ongoing:
            log.warning(ongoing)

    def _abandon(self, timeout_s: float) -> None:
        with self._cond:
            queued, self._queued = self._queued, []
            self._queued_rows = 0
            flushing = self._flushing
        lost = 0
        for flush in (Flush(self.metrics, queued), flushing):
            if flush is not None:
                lost += flush.abandon()
                self._settled(flush)
        log.error(
            "prediction log writer did not finish within %g s; %d records not written, "
            "counted as dropped (reason shutdown)",
            timeout_s,
            lost,
        )

    def _run(self) -> None:
        while True:
            try:
                self._loop()
                return
            except BaseException:  # only close() may end the thread (module doc)
                log.critical(
                    "prediction log: the writer thread met an unexpected error and goes on",
                    exc_info=True,
                )
                time.sleep(RETRY_DELAY_S)

    def _loop(self) -> None:
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
                flush = self._take_queued()
                closing = self._closed
            deadline = time.monotonic() + interval
            if flush is not None:
                self._write(flush)
            if self._catalog_retry_at is not None and time.monotonic() >= self._catalog_retry_at:
                self._ensure_catalog()
            if closing:
                with self._cond:
                    if not self._queued:
                        return

    def _take_queued(self) -> Flush | None:
        """Everything queued, as the flush now in progress (called holding ``_cond``)."""
        batches, self._queued = self._queued, []
        self._queued_rows = 0
        self._flush_requested = False
        self._flushing = Flush(self.metrics, batches) if batches else None
        return self._flushing

    def _drain_inline(self) -> None:
        with self._cond:
            flush = self._take_queued()
        if flush is not None:
            self._write(flush)

    def _write(self, flush: Flush) -> None:
        started = time.perf_counter()
        began = time.monotonic()
        try:
            with self._write_lock:
                self.segment_writer.write(flush)
        except Exception:
            log.exception("prediction log: a flush of %d records failed", flush.count)
            self.metrics.write_errors.inc()
        finally:
            lost = flush.drop_rest(FLUSH_FAILED)
            if lost:
                log.error("prediction log: dropped %d records: their flush failed", lost)
            self.metrics.flush_duration.observe(time.perf_counter() - started)
            self._note_outage(flush, began)  # before flush() returns: the line is logged
            self._settled(flush)

    def _note_outage(self, flush: Flush, began: float) -> None:
        """Tell the outage how the flush went; say so once writing works again after it."""
        if flush.failed_count:
            self._outage.failed(began, flush.failed_count)
        elif flush.written_count:
            recovered = self._outage.recovered(began)
            if recovered:
                log.warning(recovered)

    def _settled(self, flush: Flush) -> None:
        """The flush's records are written or counted as dropped: out of the queue."""
        released = flush.release()
        with self._cond:
            if released:
                self._depth -= flush.count
                self._done += flush.count
            if self._flushing is flush:
                self._flushing = None
            self._cond.notify_all()

    def _ensure_catalog(self) -> None:
        """Create or update the catalog; when that fails, retry later with backoff."""
        try:
            self.folder.check()  # not into the folder under a dropped mount
            self.catalog.ensure()
        except Exception as exc:
            log.warning("prediction log catalog not updated, will retry: %s", exc)
            self._catalog_retry_at = time.monotonic() + self._catalog_delay
            self._catalog_delay = min(self._catalog_delay * 2, CATALOG_RETRY_MAX_S)
            return
        self._catalog_retry_at = None

    def _count_dropped(self, records: Sequence[Record], reason: DropReason) -> None:
        for table, count in per_table(records).items():
            self.metrics.dropped(table, count, reason)

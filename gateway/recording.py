"""From proxied exchanges to prediction-log records, off the request path.

The request path only calls ``Recorder.record(exchange)``: a sampling decision (pure, by
request id) and an append to a bounded deque. A recorder thread wakes every
``DRAIN_INTERVAL_S``, turns what has arrived into ``PredictionRecord`` rows
(``gateway.exchange_records``, which inflates compressed request bodies to at most
``max_body_bytes`` and parses the three dialects' bodies) and hands them to
the prediction-log writer in one batch, which writes them into Parquet segments. A full
deque drops and counts; nothing here blocks or fails a request.

Why a deque polled on an interval rather than a queue with a waiting consumer: a
``queue.Queue`` wakes the consumer thread on every put, and on a busy gateway those
wake-ups (a context switch and a GIL hand-off per request) cost more than parsing the
bodies (bench/log_overhead.py). Polling wakes it twenty times a second whatever the load;
the SIGKILL loss bound grows by that interval.

Every exchange offered is counted in ``driftgate_log_exchanges_total``: ``sampled_out``,
``queued``, or ``dropped`` with a ``reason`` (``DropReason``). A queued exchange then
reaches the writer (which counts its rows in ``driftgate_log_records_total``) or is counted
a second time, as dropped: the recorder stage is as complete as the writer's. The ways
the recorder loses an exchange:

- ``queue_full``: ``max_queue`` exchanges were already waiting (never queued);
- ``closed``: offered after ``close()`` (never queued);
- ``parse_failed``: its bodies could not be turned into rows (a parser bug:
  ``exchange_records`` is meant to note unreadable bodies, not raise);
- ``shutdown``: still waiting when ``close()`` stopped waiting for the thread. The
  exchanges the thread is parsing at that moment go to the writer, which is closed by
  then and counts their rows as dropped (``closed``).

Each reason is logged at most once a minute (``DROP_LOG_INTERVAL_S``), with the count since
its previous line; what was counted but not logged yet is logged by ``close()``.

An answered exchange whose instances cannot be paired (``gateway.exchange.MISREAD``) is
logged as one row and counted in ``driftgate_log_misread_total{model}``, with a warning
once per model.

The thread also remembers recently logged request ids and their row counts (bounded), so
that feedback for an id the gateway never logged can be counted as unknown, and a label for
a row the request did not have refused (``LabelsNothing``), without querying the store.

Feedback is not sampled traffic: its sender waits for the answer and can send it again. So
labels the writer's queue refuses are not dropped in silence as exchanges are: the post's
labels are handed over in one ``submit`` (all or none), and a refusal raises
``FeedbackRefused``, which the feedback endpoint answers with 503 and ``Retry-After``.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict, deque
from datetime import UTC, datetime
from typing import Literal

from prometheus_client import CollectorRegistry, Counter

from gateway.exchange import MISREAD
from gateway.exchange_records import Exchange, exchange_records, learn_inputs
from gateway.settings import DEFAULT_MAX_BODY_BYTES
from monitoring.prediction_log import FeedbackRecord, PredictionLogWriter, PredictionRecord
from monitoring.sampling import SamplingPolicy

log = logging.getLogger("driftgate.gateway.recording")
_REMEMBERED_IDS = 200_000
#: How often the recorder thread takes what the request path appended.
DRAIN_INTERVAL_S = 0.05
#: Exchanges dropped for one reason are logged at most this often.
DROP_LOG_INTERVAL_S = 60.0

#: Why the recorder dropped an exchange: the ``reason`` of ``driftgate_log_exchanges_total``.
DropReason = Literal["queue_full", "closed", "parse_failed", "shutdown"]
QUEUE_FULL: DropReason = "queue_full"
CLOSED: DropReason = "closed"
PARSE_FAILED: DropReason = "parse_failed"
SHUTDOWN: DropReason = "shutdown"
#: Losses the request path causes are warnings; a parser bug or a shutdown cut short, errors.
_LEVEL: dict[DropReason, int] = {
    QUEUE_FULL: logging.WARNING,
    CLOSED: logging.WARNING,
    PARSE_FAILED: logging.ERROR,
    SHUTDOWN: logging.ERROR,
}
_WHY: dict[DropReason, str] = {
    QUEUE_FULL: "the recorder's queue (log.max_queue) was full",
    CLOSED: "they arrived after the recorder was closed",
    PARSE_FAILED: "their bodies could not be parsed into rows",
    SHUTDOWN: "they were still waiting when shutdown stopped waiting for the recorder",
}


class LabelsNothing(ValueError):
    """A label for a row past the last one of a request this gateway logged."""

    def __init__(self, index: int, label: FeedbackRecord, rows: int) -> None:
        last = "row 0" if rows == 1 else f"rows 0 to {rows - 1}"
        super().__init__(
            f"label {index}: request {label.request_id!r} was logged with {rows} "
            f"row{'s' if rows != 1 else ''} ({last}); row {label.row} labels no prediction"
        )


class FeedbackRefused(RuntimeError):
    """The prediction log's writer took none of a post's labels (its queue was full, or it
    is closed); the message says so and what to do. ``retry``: whether sending the same
    labels again later can succeed."""

    def __init__(self, message: str, *, retry: bool = True) -> None:
        super().__init__(message)
        self.retry = retry


class Recorder:
    def __init__(
        self,
        writer: PredictionLogWriter,
        sampling: SamplingPolicy,
        registry: CollectorRegistry,
        *,
        max_queue: int = 10_000,
        keep_image_bytes: bool = False,
        max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
    ) -> None:
        self.writer = writer
        #: A compressed request body is inflated to at most this (the gateway's own limit).
        self.max_body_bytes = max_body_bytes
        self.sampling = sampling
        self.keep_image_bytes = keep_image_bytes
        self.max_queue = max_queue
        #: (route label, exchange): appended by the request path, taken by the thread.
        self._pending: deque[tuple[str, Exchange]] = deque()
        self._closed = False
        #: Held to check ``_closed`` and append, so nothing is queued after ``close()``.
        self._accepting = threading.Lock()
        self._drop_log = _DropLog()
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._idle = threading.Event()
        self._idle.set()
        #: Recently logged request ids, each with its number of rows.
        self._seen: OrderedDict[str, int] = OrderedDict()
        #: Per model, the input names of its answered (2xx) requests and the JSON types
        #: sent under each: the runtime checked them, so they are as many as the model
        #: has inputs (``exchange_records``: what a refused request may add to the store).
        self._known_inputs: dict[str, dict[str, set[str]]] = {}
        self._seen_lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, name="recorder", daemon=True)
        self.exchanges = Counter(
            "driftgate_log_exchanges_total",
            "Answered requests offered to the prediction log, by outcome (queued | "
            "sampled_out | dropped) and why dropped (queue_full | closed | parse_failed | "
            "shutdown); a queued one that is lost later is counted again as dropped.",
            ["route", "outcome", "reason"],
            registry=registry,
        )
        self.misread = Counter(
            "driftgate_log_misread_total",
            "Answered requests whose instances the recorder could not tell apart (tensors "
            "of different row counts, or a request and answer of different counts), logged "
            "as one row: whole tensors in in__unrecognised / out__unrecognised, a note in "
            "error.",
            ["model"],
            registry=registry,
        )
        #: Models whose misread request was logged (once each; then only counted).
        self._misread_models: set[str] = set()
        self.feedback = Counter(
            "driftgate_feedback_total",
            "Ground-truth labels received, by whether their request id was logged recently "
            "(matched | unknown; unknown ids are stored all the same), or refused because "
            "the prediction log's queue was full or closed (503) or is smaller than the post "
            "(413).",
            ["outcome"],
            registry=registry,
        )

    def start(self) -> None:
        self.writer.start()
        self._thread.start()

    def record(self, route_label: str, exchange: Exchange, *, shadowed: bool = False) -> None:
        """Queue ``exchange`` for the log unless sampled out or the queue is full; counted
        under ``route_label`` (bounded: ``GatewayState.route_label``)."""
        if not self.sampling.keep(
            exchange.route,
            exchange.request_id,
            status=exchange.status,
            shadowed=shadowed or exchange.role == "shadow",
        ):
            self.exchanges.labels(route_label, "sampled_out", "").inc()
            return
        refused: DropReason | None = None
        with self._accepting:
            if self._closed:
                refused = CLOSED
            elif len(self._pending) >= self.max_queue:
                refused = QUEUE_FULL
            else:
                self._pending.append((route_label, exchange))  # the recorder thread polls
        if refused is not None:
            self._dropped(route_label, exchange, refused)
            return
        self.exchanges.labels(route_label, "queued", "").inc()

    def record_feedback(self, labels: list[FeedbackRecord]) -> tuple[int, int]:
        """Queue one post's labels for the writer, all or none; returns (matched, unknown)
        against recently logged request ids.

        Raises ``LabelsNothing``, storing none, when a label names a row past the last one
        of a request this gateway logged: it would join no prediction. Raises
        ``FeedbackRefused``, storing none, when the writer does not take them (its queue is
        full, or it is closed: counted by the writer as dropped) or its writes into the
        store are failing (they would be dropped at their write): counted as ``refused``."""
        with self._seen_lock:
            logged = [self._seen.get(label.request_id) for label in labels]
        for index, (label, rows) in enumerate(zip(labels, logged, strict=True)):
            if rows is not None and label.row is not None and label.row >= rows:
                raise LabelsNothing(index, label, rows)
        capacity = self.writer.settings.max_queue
        if len(labels) > capacity:  # refused however empty the queue: never worth a retry
            self.feedback.labels("refused").inc(len(labels))
            raise FeedbackRefused(
                f"{len(labels)} labels are more than the prediction log's queue holds "
                f"(log.max_queued_rows: {capacity}): none accepted; send them in posts of "
                f"at most {capacity}",
                retry=False,
            )
        count = f"{len(labels)} label{'s' if len(labels) != 1 else ''}"
        failing_s = self.writer.writes_failing_for()
        if failing_s is not None:  # queued now, they would be dropped at their write
            self.feedback.labels("refused").inc(len(labels))
            raise FeedbackRefused(
                f"the prediction log cannot write to its store (its writes have failed for "
                f"{failing_s:.0f} s): {count} not accepted; send them again"
            )
        if not self.writer.submit(labels):  # one submit: the writer takes all, or none
            self.feedback.labels("refused").inc(len(labels))
            why = (
                "the prediction log is closed (the gateway is shutting down)"
                if self._closed
                else "the prediction log's queue is full"
            )
            raise FeedbackRefused(f"{why}: {count} not accepted; send them again")
        matched = sum(1 for rows in logged if rows is not None)
        self.feedback.labels("matched").inc(matched)
        self.feedback.labels("unknown").inc(len(labels) - matched)
        return matched, len(labels) - matched

    def flush(self, timeout_s: float = 10.0) -> None:
        """Hand everything recorded so far to the writer, and have the writer write it."""
        deadline = threading.Event()
        timer = threading.Timer(timeout_s, deadline.set)
        timer.start()
        try:
            while (self._pending or not self._idle.is_set()) and not deadline.is_set():
                self._wake.set()
                deadline.wait(0.01)
        finally:
            timer.cancel()
        self.writer.flush(timeout_s)

    def close(self, timeout_s: float = 30.0) -> None:
        """Record everything queued, then flush and stop the writer (SIGTERM loses nothing).

        Exchanges offered from now on are dropped (``closed``); those still waiting when
        the thread has not finished within ``timeout_s`` are dropped (``shutdown``)."""
        with self._accepting:
            self._closed = True
        self._stopping.set()
        self._wake.set()
        if self._thread.is_alive():
            self._thread.join(timeout=timeout_s)
        else:  # never started: record what arrived all the same
            self._drain()
        self._abandon_pending()
        self._drop_log.flush()
        self.writer.close(timeout_s)

    def _abandon_pending(self) -> None:
        """Count what the thread did not take as dropped (``shutdown``), in one line of
        log. ``popleft`` is atomic: an exchange the thread takes meanwhile is its own."""
        lost = 0
        while True:
            try:
                route_label, _ = self._pending.popleft()
            except IndexError:
                break
            self.exchanges.labels(route_label, "dropped", SHUTDOWN).inc()
            lost += 1
        if lost:
            log.error(
                "prediction log: dropped %d exchanges at the recorder (%s: %s)",
                lost,
                SHUTDOWN,
                _WHY[SHUTDOWN],
            )

    def _dropped(
        self,
        route_label: str,
        exchange: Exchange,
        reason: DropReason,
        error: BaseException | None = None,
    ) -> None:
        self.exchanges.labels(route_label, "dropped", reason).inc()
        self._drop_log.dropped(reason, exchange.request_id, error)

    def _run(self) -> None:
        while True:
            try:
                while not self._stopping.is_set():
                    self._wake.wait(DRAIN_INTERVAL_S)
                    self._wake.clear()
                    self._drain()
                self._drain()
                return
            except Exception:  # only close() may end the thread, or the queue fills up
                log.critical(
                    "prediction log: the recorder thread met an error and goes on", exc_info=True
                )
                time.sleep(DRAIN_INTERVAL_S)

    def _drain(self) -> None:
        if not self._pending:
            return
        self._idle.clear()
        try:
            records: list[PredictionRecord] = []
            ids: list[tuple[str, int]] = []
            while self._pending:
                route_label, exchange = self._pending.popleft()
                try:
                    rows = self._rows(exchange)
                except Exception as exc:  # a bug in a parser must not stop the recorder
                    self._dropped(route_label, exchange, PARSE_FAILED, exc)
                    continue
                records.extend(rows)
                ids.append((exchange.request_id, len(rows)))
            self.writer.submit(records)
            with self._seen_lock:
                for request_id, count in ids:  # a shadow's record adds no row of its own
                    self._seen[request_id] = max(count, self._seen.get(request_id, 0))
                while len(self._seen) > _REMEMBERED_IDS:
                    self._seen.popitem(last=False)
        finally:
            self._idle.set()

    def _rows(self, exchange: Exchange) -> list[PredictionRecord]:
        known = self._known_inputs.setdefault(exchange.model, {})
        rows = exchange_records(exchange, self.keep_image_bytes, known, self.max_body_bytes)
        if 200 <= exchange.status < 300:  # the runtime checked these names and types
            learn_inputs(known, rows)
        if rows and rows[0].error == MISREAD:
            self.misread.labels(exchange.model).inc()
            if exchange.model not in self._misread_models:
                self._misread_models.add(exchange.model)
                log.warning(
                    "prediction log: request %s of model %s could not be split into "
                    "instances (tensors with different numbers of rows, or inputs and "
                    "outputs of different counts); logged as one row, its whole tensors in "
                    "in__unrecognised and out__unrecognised. "
                    "Counted in driftgate_log_misread_total, logged once per model",
                    exchange.request_id,
                    exchange.model,
                )
        return rows


class _DropLog:
    """Logs the recorder's drops at most once a minute per reason, with the count since
    the reason's previous line (drops happen on the request path, possibly by thousands).
    The first of a reason is logged when it happens, with its request id and error."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._unlogged: dict[DropReason, int] = {}
        self._next: dict[DropReason, float] = {}

    def dropped(self, reason: DropReason, request_id: str, error: BaseException | None) -> None:
        now = time.monotonic()
        with self._lock:
            count = self._unlogged.get(reason, 0) + 1
            if now < self._next.get(reason, 0.0):
                self._unlogged[reason] = count
                return
            self._unlogged[reason] = 0
            self._next[reason] = now + DROP_LOG_INTERVAL_S
        log.log(
            _LEVEL[reason],
            "prediction log: dropped %d exchanges at the recorder (%s: %s), the latest "
            "request %s; drops for this reason in the next %g s are counted, not logged",
            count,
            reason,
            _WHY[reason],
            request_id,
            DROP_LOG_INTERVAL_S,
            exc_info=error,
        )

    def flush(self) -> None:
        """Log what was counted and not logged yet (the recorder closes)."""
        with self._lock:
            unlogged = {reason: count for reason, count in self._unlogged.items() if count}
            self._unlogged.clear()
        for reason, count in unlogged.items():
            log.log(
                _LEVEL[reason],
                "prediction log: dropped %d more exchanges at the recorder (%s: %s)",
                count,
                reason,
                _WHY[reason],
            )


def now_utc() -> datetime:
    return datetime.now(UTC)

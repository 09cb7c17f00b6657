"""From proxied exchanges to prediction-log records, off the request path.

The request path only calls ``Recorder.record(exchange)``: a sampling decision (pure, by
request id) and a ``put_nowait`` on a bounded queue. A recorder thread turns exchanges
into ``PredictionRecord`` rows (parsing the three dialects' bodies, see
``gateway.exchange``) and hands them to the prediction-log writer, which batches them
into Parquet segments. A full queue drops and counts; nothing here blocks or fails a
request.

The thread also remembers recently logged request ids (bounded), so that feedback for an
id the gateway never logged can be counted as unknown without querying the store.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime

from prometheus_client import CollectorRegistry, Counter

from gateway.exchange import request_rows, response_rows
from monitoring.prediction_log import FeedbackRecord, PredictionLogWriter, PredictionRecord
from monitoring.sampling import SamplingPolicy

log = logging.getLogger("driftgate.gateway.recording")
_REMEMBERED_IDS = 200_000


@dataclass(frozen=True)
class Exchange:
    """One answered request (or shadow call), as the gateway saw it."""

    request_id: str
    timestamp: datetime
    route: str
    arm: str
    role: str
    dialect: str
    model: str
    version: str
    replica: str
    status: int
    latency_s: float
    trace_id: str | None
    request_body: bytes
    request_headers: Mapping[str, str]  # lower-cased names
    response_body: bytes
    response_headers: Mapping[str, str]


class Recorder:
    def __init__(
        self,
        writer: PredictionLogWriter,
        sampling: SamplingPolicy,
        registry: CollectorRegistry,
        *,
        max_queue: int = 10_000,
        keep_image_bytes: bool = False,
    ) -> None:
        self.writer = writer
        self.sampling = sampling
        self.keep_image_bytes = keep_image_bytes
        self._queue: queue.Queue[Exchange | None] = queue.Queue(maxsize=max_queue)
        self._seen: OrderedDict[str, None] = OrderedDict()
        self._seen_lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, name="recorder", daemon=True)
        self.exchanges = Counter(
            "driftgate_log_exchanges_total",
            "Answered requests offered to the prediction log, by outcome "
            "(queued | sampled_out | dropped: the recorder's queue was full).",
            ["route", "outcome"],
            registry=registry,
        )
        self.feedback = Counter(
            "driftgate_feedback_total",
            "Ground-truth labels received, by whether their request id was logged recently "
            "(matched | unknown). Unknown ids are stored all the same.",
            ["outcome"],
            registry=registry,
        )

    def start(self) -> None:
        self.writer.start()
        self._thread.start()

    def record(self, exchange: Exchange, *, shadowed: bool = False) -> None:
        route = exchange.route
        if not self.sampling.keep(
            route,
            exchange.request_id,
            status=exchange.status,
            shadowed=shadowed or exchange.role == "shadow",
        ):
            self.exchanges.labels(route, "sampled_out").inc()
            return
        try:
            self._queue.put_nowait(exchange)
        except queue.Full:
            self.exchanges.labels(route, "dropped").inc()
            return
        self.exchanges.labels(route, "queued").inc()

    def record_feedback(self, labels: list[FeedbackRecord]) -> tuple[int, int]:
        """Store labels; returns (matched, unknown) against recently logged request ids."""
        with self._seen_lock:
            matched = sum(1 for label in labels if label.request_id in self._seen)
        self.feedback.labels("matched").inc(matched)
        self.feedback.labels("unknown").inc(len(labels) - matched)
        self.writer.submit(labels)
        return matched, len(labels) - matched

    def flush(self, timeout_s: float = 10.0) -> None:
        self._queue.join()
        self.writer.flush(timeout_s)

    def close(self, timeout_s: float = 30.0) -> None:
        """Record everything queued, then flush and stop the writer (SIGTERM loses nothing)."""
        self._queue.put(None)
        self._thread.join(timeout=timeout_s)
        self.writer.close(timeout_s)

    def _run(self) -> None:
        while True:
            exchange = self._queue.get()
            try:
                if exchange is None:
                    return
                records = exchange_records(exchange, self.keep_image_bytes)
                self.writer.submit(records)
                with self._seen_lock:
                    self._seen[exchange.request_id] = None
                    while len(self._seen) > _REMEMBERED_IDS:
                        self._seen.popitem(last=False)
            except Exception:  # a body we cannot read must not stop the recorder
                log.exception(
                    "could not record request %s", exchange.request_id if exchange else ""
                )
            finally:
                self._queue.task_done()


def exchange_records(exchange: Exchange, keep_image_bytes: bool = False) -> list[PredictionRecord]:
    content_type = exchange.request_headers.get("content-type", "").split(";")[0].strip()
    inputs, single, note = request_rows(
        exchange.dialect,
        exchange.request_body,
        content_type,
        exchange.request_headers,
        keep_image_bytes,
    )
    outputs, error = response_rows(
        exchange.dialect, exchange.response_body, exchange.response_headers, single
    )
    rows = max(len(inputs), len(outputs), 1)
    return [
        PredictionRecord(
            request_id=exchange.request_id,
            row=row,
            timestamp=exchange.timestamp,
            route=exchange.route,
            arm=exchange.arm,
            role=exchange.role,
            model=exchange.model,
            version=exchange.version,
            replica=exchange.replica,
            dialect=exchange.dialect,
            status=exchange.status,
            latency_s=exchange.latency_s,
            trace_id=exchange.trace_id,
            inputs=inputs[row] if row < len(inputs) else {},
            outputs=outputs[row] if row < len(outputs) else {},
            error=error or (note if exchange.status < 400 and note else None),
        )
        for row in range(rows)
    ]


def now_utc() -> datetime:
    return datetime.now(UTC)

"""From proxied exchanges to prediction-log records, off the request path.

The request path only calls ``Recorder.record(exchange)``: a sampling decision (pure, by
request id) and an append to a bounded deque. A recorder thread wakes every
``DRAIN_INTERVAL_S``, turns what has arrived into ``PredictionRecord`` rows (parsing the
three dialects' bodies, see ``gateway.exchange``) and hands them to the prediction-log
writer in one batch, which writes them into Parquet segments. A full deque drops and
counts; nothing here blocks or fails a request.

Why a deque polled on an interval rather than a queue with a waiting consumer: a
``queue.Queue`` wakes the consumer thread on every put, and on a busy gateway those
wake-ups (a context switch and a GIL hand-off per request) cost more than parsing the
bodies (bench/log_overhead.py). Polling wakes it twenty times a second whatever the load;
the SIGKILL loss bound grows by that interval.

The thread also remembers recently logged request ids (bounded), so that feedback for an
id the gateway never logged can be counted as unknown without querying the store.
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict, deque
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from prometheus_client import CollectorRegistry, Counter

from gateway.exchange import request_rows, response_rows
from monitoring.prediction_log import FeedbackRecord, PredictionLogWriter, PredictionRecord
from monitoring.sampling import SamplingPolicy

log = logging.getLogger("driftgate.gateway.recording")
_REMEMBERED_IDS = 200_000
#: How often the recorder thread takes what the request path appended.
DRAIN_INTERVAL_S = 0.05


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
        self.max_queue = max_queue
        self._pending: deque[Exchange] = deque()
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._idle = threading.Event()
        self._idle.set()
        self._seen: OrderedDict[str, None] = OrderedDict()
        #: Per model, the input names of its answered (2xx) requests: the runtime checked
        #: them, so there are as many as the model has inputs.
        self._known_inputs: dict[str, set[str]] = {}
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

    def record(self, route_label: str, exchange: Exchange, *, shadowed: bool = False) -> None:
        """Queue ``exchange`` for the log unless sampled out or the queue is full; counted
        under ``route_label`` (bounded: ``GatewayState.route_label``)."""
        if not self.sampling.keep(
            exchange.route,
            exchange.request_id,
            status=exchange.status,
            shadowed=shadowed or exchange.role == "shadow",
        ):
            self.exchanges.labels(route_label, "sampled_out").inc()
            return
        if len(self._pending) >= self.max_queue:
            self.exchanges.labels(route_label, "dropped").inc()
            return
        self._pending.append(exchange)  # thread-safe; the recorder thread polls
        self.exchanges.labels(route_label, "queued").inc()

    def record_feedback(self, labels: list[FeedbackRecord]) -> tuple[int, int]:
        """Store labels; returns (matched, unknown) against recently logged request ids."""
        with self._seen_lock:
            matched = sum(1 for label in labels if label.request_id in self._seen)
        self.feedback.labels("matched").inc(matched)
        self.feedback.labels("unknown").inc(len(labels) - matched)
        self.writer.submit(labels)
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
        """Record everything queued, then flush and stop the writer (SIGTERM loses nothing)."""
        self._stopping.set()
        self._wake.set()
        if self._thread.is_alive():
            self._thread.join(timeout=timeout_s)
        else:  # never started: record what arrived all the same
            self._drain()
        self.writer.close(timeout_s)

    def _run(self) -> None:
        while not self._stopping.is_set():
            self._wake.wait(DRAIN_INTERVAL_S)
            self._wake.clear()
            self._drain()
        self._drain()

    def _drain(self) -> None:
        if not self._pending:
            return
        self._idle.clear()
        try:
            records: list[PredictionRecord] = []
            ids = []
            while self._pending:
                exchange = self._pending.popleft()
                known = self._known_inputs.setdefault(exchange.model, set())
                try:
                    rows = exchange_records(exchange, self.keep_image_bytes, known)
                except Exception:  # a body we cannot read must not stop the recorder
                    log.exception("could not record request %s", exchange.request_id)
                    continue
                if 200 <= exchange.status < 300:  # the runtime checked these names
                    for row in rows:
                        known.update(row.inputs)
                records.extend(rows)
                ids.append(exchange.request_id)
            self.writer.submit(records)
            with self._seen_lock:
                for request_id in ids:
                    self._seen[request_id] = None
                while len(self._seen) > _REMEMBERED_IDS:
                    self._seen.popitem(last=False)
        finally:
            self._idle.set()


#: The input column of a refused request's values whose names no answered request of its
#: model has used: one JSON text column (``in__unrecognised``), not a column per name.
UNRECOGNISED = "_unrecognised"


def exchange_records(
    exchange: Exchange,
    keep_image_bytes: bool = False,
    known_inputs: Collection[str] | None = None,
) -> list[PredictionRecord]:
    """The log rows of one exchange. With ``known_inputs`` (the input names of the model's
    answered requests), a refused request's (4xx) inputs of other names are folded into
    ``UNRECOGNISED``: every refused request is logged, and made-up names must not add
    columns to the store without bound. Names the runtime accepted keep their columns."""
    content_type = exchange.request_headers.get("content-type", "").split(";")[0].strip()
    inputs, single, note = request_rows(
        exchange.dialect,
        exchange.request_body,
        content_type,
        exchange.request_headers,
        keep_image_bytes,
    )
    refused = 400 <= exchange.status < 500
    if known_inputs is not None and refused and not content_type.startswith("image/"):
        inputs = [_fold_unrecognised(row, known_inputs) for row in inputs]
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


def _fold_unrecognised(row: dict[str, Any], known: Collection[str]) -> dict[str, Any]:
    unrecognised = {name: value for name, value in row.items() if name not in known}
    if not unrecognised:
        return row
    kept = {name: value for name, value in row.items() if name in known}
    kept[UNRECOGNISED] = unrecognised
    return kept


def now_utc() -> datetime:
    return datetime.now(UTC)

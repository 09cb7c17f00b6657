"""Prometheus metrics of the prediction-log writer, registered on the registry it is given.

Labels are bounded: ``table`` (predictions|feedback), ``outcome`` (written|dropped) and,
for dropped records, ``reason`` (``DropReason``; empty for written ones). Every record
the writer accepts or refuses ends up counted once, written or dropped. The queue depth
is read from the writer at scrape time by a collector, not kept in a gauge;
so is the number of damaged segments set aside in the store (``.quarantine/``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Literal

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

#: Why records were dropped: the ``reason`` label of ``driftgate_log_records_total``.
DropReason = Literal[
    "queue_full", "closed", "unconvertible", "write_failed", "flush_failed", "shutdown"
]
QUEUE_FULL: DropReason = "queue_full"  # submit found max_queue records already waiting
CLOSED: DropReason = "closed"  # submit after close()
UNCONVERTIBLE: DropReason = "unconvertible"  # no segment can hold it (no timestamp, a bad value)
WRITE_FAILED: DropReason = "write_failed"  # every attempt at writing its segment failed
FLUSH_FAILED: DropReason = "flush_failed"  # an unexpected error outside the retried write
SHUTDOWN: DropReason = "shutdown"  # close() gave up waiting before it was written

FLUSH_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class LogMetrics:
    def __init__(
        self,
        registry: CollectorRegistry,
        queue_depth: Callable[[], int],
        quarantined: Callable[[], int] = lambda: 0,
    ) -> None:
        self.records = Counter(
            "driftgate_log_records_total",
            "Prediction-log records by table and outcome (written|dropped), and why dropped.",
            ["table", "outcome", "reason"],
            registry=registry,
        )
        self.flush_duration = Histogram(
            "driftgate_log_flush_duration_seconds",
            "Time to turn one flushed batch into Parquet segments on disk.",
            buckets=FLUSH_BUCKETS,
            registry=registry,
        )
        self.segments = Counter(
            "driftgate_log_segments_total",
            "Parquet segments written by the prediction-log writer, by table.",
            ["table"],
            registry=registry,
        )
        self.write_errors = Counter(
            "driftgate_log_write_errors_total",
            "Failed attempts to write a segment (a bounded number per segment), and flushes "
            "that failed outside those attempts.",
            registry=registry,
        )
        registry.register(
            ScrapedGauge(
                "driftgate_log_queue_depth",
                "Prediction-log records accepted by submit and not yet written (or dropped).",
                queue_depth,
            )
        )
        registry.register(
            ScrapedGauge(
                "driftgate_log_quarantined_segments",
                "Segments of the store that were not readable Parquet, moved to .quarantine/.",
                quarantined,
            )
        )

    def written(self, table: str, count: int) -> None:
        self.records.labels(table, "written", "").inc(count)

    def dropped(self, table: str, count: int, reason: DropReason) -> None:
        self.records.labels(table, "dropped", reason).inc(count)


class ScrapedGauge(Collector):
    """A gauge whose value ``read`` gives at scrape time (nothing kept between scrapes)."""

    def __init__(self, name: str, documentation: str, read: Callable[[], int]) -> None:
        self._name, self._documentation, self._read = name, documentation, read

    def collect(self) -> Iterable[Metric]:
        family = GaugeMetricFamily(self._name, self._documentation)
        family.add_metric([], float(self._read()))
        yield family

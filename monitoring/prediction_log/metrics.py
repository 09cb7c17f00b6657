"""Prometheus metrics of the prediction-log writer, registered on the registry it is given.

Labels are bounded: ``table`` (predictions|feedback) and ``outcome`` (written|dropped).
The queue depth is read from the writer at scrape time by a collector, not kept in a gauge;
so is the number of damaged segments set aside in the store (``.quarantine/``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

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
            "Prediction-log records by table and outcome (written|dropped).",
            ["table", "outcome"],
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
            "Failed attempts to write a segment (each retried a bounded number of times).",
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


class ScrapedGauge(Collector):
    """A gauge whose value ``read`` gives at scrape time (nothing kept between scrapes)."""

    def __init__(self, name: str, documentation: str, read: Callable[[], int]) -> None:
        self._name, self._documentation, self._read = name, documentation, read

    def collect(self) -> Iterable[Metric]:
        family = GaugeMetricFamily(self._name, self._documentation)
        family.add_metric([], float(self._read()))
        yield family

"""Prometheus metrics of the runtime, each app owning its registry.

Nothing here registers at import time: ``RuntimeMetrics(registry)`` creates the metrics
on the registry it is given, so two apps in one process (tests) never collide. Names
follow Prometheus conventions (base units, ``_total`` counters) and labels are bounded:
model, version, protocol, code, format, outcome. Never ids.

Latency histograms take the current trace id as an exemplar; exemplars are only
rendered when the scraper asks for OpenMetrics (see ``render_metrics``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    GCCollector,
    Histogram,
    PlatformCollector,
    ProcessCollector,
)
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.openmetrics.exposition import (
    CONTENT_TYPE_LATEST as OPENMETRICS_CONTENT_TYPE,
)
from prometheus_client.openmetrics.exposition import generate_latest as generate_openmetrics
from prometheus_client.registry import Collector

#: Seconds; spans sub-millisecond ONNX calls up to multi-second cold starts.
LATENCY_BUCKETS = (
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)


class RuntimeMetrics:
    """The runtime's metrics, registered on ``registry``."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        self.requests = Counter(
            "driftgate_runtime_requests_total",
            "Inference requests answered by the runtime, by protocol and HTTP status code.",
            ["model", "version", "protocol", "code"],
            registry=registry,
        )
        self.request_duration = Histogram(
            "driftgate_runtime_request_duration_seconds",
            "Runtime time per inference request: decode, validate, infer, encode.",
            ["model", "protocol"],
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.client_timeouts = Counter(
            "driftgate_runtime_client_timeouts_total",
            "Connections closed because the client did not send a whole request within "
            "--client-timeout, by how far it got (connection | head | body).",
            ["phase"],
            registry=registry,
        )
        self.malformed_requests = Counter(
            "driftgate_runtime_malformed_requests_total",
            "Connections closed with 400 because what the client sent was not HTTP the parser "
            "could read (a bad method, header or chunk size; TLS to the plain port).",
            registry=registry,
        )
        self.requests_in_flight = Gauge(
            "driftgate_runtime_requests_in_flight",
            "Inference requests the runtime is working on now (reading, queued for a batch, "
            "in the model, answering): what autoscaling on load per replica reads.",
            registry=registry,
        )
        self.inference_duration = Histogram(
            "driftgate_inference_duration_seconds",
            "Time spent inside the model backend per call (model only).",
            ["model", "version"],
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.inference_calls = Counter(
            "driftgate_inference_calls_total",
            "Backend calls by where they ran: event_loop (known to be quick) or thread_pool.",
            ["model", "version", "placement"],
            registry=registry,
        )
        self.nonfinite_outputs = Counter(
            "driftgate_nonfinite_output_values_total",
            "NaN and infinite values in the outputs of backend calls (answered as null in "
            "JSON), by output.",
            ["model", "version", "output"],
            registry=registry,
        )
        self.batch_size = Histogram(
            "driftgate_batch_size",
            "Rows (dimension 0) per backend call.",
            ["model", "version"],
            buckets=BATCH_BUCKETS,
            registry=registry,
        )
        self.queue_depth = Gauge(
            "driftgate_queue_depth",
            "Requests waiting in a model version's batch queue (models with batching on).",
            ["model", "version"],
            registry=registry,
        )
        self.batch_splits = Counter(
            "driftgate_batch_splits_total",
            "Merged batches run request by request instead: the call failed "
            "(call_failed) or an output was not one row per input row (outputs_not_batched).",
            ["model", "version", "reason"],
            registry=registry,
        )
        self.batch_rejections = Counter(
            "driftgate_batch_rejections_total",
            "Requests refused with 503 because the model version's batch queue was full "
            "(batching.max_queue_size).",
            ["model", "version"],
            registry=registry,
        )
        self.overload_rejections = Counter(
            "driftgate_runtime_overload_rejections_total",
            "Requests refused with 503 because the model version was overloaded: "
            "waiting_calls (DRIFTGATE_MAX_WAITING_CALLS calls already wait for a thread), "
            "waiting_explanations (DRIFTGATE_MAX_WAITING_EXPLANATIONS explanations already "
            "wait for an explanation slot).",
            ["model", "version", "reason"],
            registry=registry,
        )
        self.model_loads = Counter(
            "driftgate_model_loads_total",
            "Model version load attempts by outcome (success|failure).",
            ["model", "format", "outcome"],
            registry=registry,
        )
        self.model_load_duration = Histogram(
            "driftgate_model_load_duration_seconds",
            "Time to load one model version.",
            ["model", "format"],
            buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
            registry=registry,
        )
        self.explain_duration = Histogram(
            "driftgate_explain_duration_seconds",
            "Time to explain one request's rows (background and attributions), explain endpoint.",
            ["model"],
            # Kernel SHAP predicts rows x coalitions x background rows: seconds, not millis.
            buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 30),
            registry=registry,
        )


class ModelStateCollector(Collector):
    """``driftgate_model_ready{model,version}``, read from the repository at scrape time."""

    def __init__(self, states: Callable[[], Iterable[tuple[str, str, bool]]]) -> None:
        self._states = states

    def collect(self) -> Iterable[Metric]:
        family = GaugeMetricFamily(
            "driftgate_model_ready",
            "1 when the model version is loaded and serving, 0 when loading or failed.",
            labels=["model", "version"],
        )
        for model, version, ready in self._states():
            family.add_metric([model, version], 1.0 if ready else 0.0)
        yield family


def new_registry() -> CollectorRegistry:
    """An app's own registry, with the process metrics (CPU, memory, open files, GC)."""
    registry = CollectorRegistry()
    ProcessCollector(registry=registry)
    PlatformCollector(registry=registry)
    GCCollector(registry=registry)
    return registry


def exemplar(trace_id: int | None) -> dict[str, str] | None:
    """An exemplar label set for a trace id (``None`` when there is no sampled trace)."""
    return {"trace_id": format(trace_id, "032x")} if trace_id else None


def render_metrics(registry: CollectorRegistry, accept: str | None) -> tuple[bytes, str]:
    """The exposition body and content type, OpenMetrics (with exemplars) when asked for."""
    if accept and "application/openmetrics-text" in accept:
        return generate_openmetrics(registry), OPENMETRICS_CONTENT_TYPE  # type: ignore[no-untyped-call]
    return generate_latest(registry), CONTENT_TYPE_LATEST

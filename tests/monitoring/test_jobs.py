"""The job scheduler: runs, measures and survives its jobs."""

from __future__ import annotations

import time

from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from prometheus_client import CollectorRegistry

from monitoring.jobs import JobScheduler


def scheduler() -> tuple[JobScheduler, CollectorRegistry, InMemorySpanExporter]:
    registry, spans = CollectorRegistry(), InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(spans))
    return JobScheduler(registry, provider.get_tracer("test")), registry, spans


def test_a_failing_job_is_counted_and_the_others_keep_running() -> None:
    jobs, registry, spans = scheduler()
    ran: list[str] = []

    def broken() -> None:
        raise RuntimeError("disk full")

    jobs.add("broken", 0.05, broken)
    jobs.add("fine", 0.05, lambda: ran.append("fine"))
    jobs.start()
    deadline = time.monotonic() + 5
    while len(ran) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    jobs.stop()
    assert len(ran) >= 2
    errors = registry.get_sample_value(
        "driftgate_job_runs_total", {"job": "broken", "outcome": "error"}
    )
    successes = registry.get_sample_value(
        "driftgate_job_runs_total", {"job": "fine", "outcome": "ok"}
    )
    assert errors is not None and errors >= 1
    assert successes is not None and successes >= 2
    names = {span.name for span in spans.get_finished_spans()}
    assert {"job broken", "job fine"} <= names

"""The job scheduler: runs, measures and survives its jobs."""

from __future__ import annotations

import time

from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from prometheus_client import CollectorRegistry

from monitoring.jobs import FailingTargets, JobScheduler


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


def test_each_job_exports_the_times_of_its_latest_good_and_failed_runs() -> None:
    """The alert compares the two: a failure later than the last success, whatever the
    job's interval. Both are 0 from the job's registration, so that a process that has
    just started (and has not run the job yet) has both series and does not alert."""
    jobs, registry, _ = scheduler()
    outcome = {"fail": True}

    def flaky() -> None:
        if outcome["fail"]:
            raise RuntimeError("reference profile unreadable")

    jobs.add("drift", 60, flaky)

    def times() -> tuple[float | None, float | None]:
        labels = {"job": "drift"}
        return (
            registry.get_sample_value("driftgate_job_last_success_timestamp_seconds", labels),
            registry.get_sample_value("driftgate_job_last_failure_timestamp_seconds", labels),
        )

    assert times() == (0.0, 0.0)
    before = time.time()
    assert not jobs.run_once(jobs.jobs[0])
    success, failure = times()
    assert success == 0.0
    assert failure is not None and before <= failure <= time.time()

    outcome["fail"] = False
    assert jobs.run_once(jobs.jobs[0])
    success, later_failure = times()
    assert later_failure == failure
    assert success is not None and success >= failure


def test_failing_targets_show_the_latest_run_and_forget_targets_it_no_longer_met() -> None:
    registry = CollectorRegistry()
    failing = FailingTargets("driftgate_test_failing", "Test.", ["model", "version"], registry)

    def value(version: str) -> float | None:
        labels = {"model": "titanic", "version": version}
        return registry.get_sample_value("driftgate_test_failing", labels)

    failing.record({("titanic", "1"): False, ("titanic", "2"): True})
    assert (value("1"), value("2")) == (0.0, 1.0)
    # Version 1 got no traffic since: its series goes, and version 2 works again.
    failing.record({("titanic", "2"): False})
    assert (value("1"), value("2")) == (None, 0.0)

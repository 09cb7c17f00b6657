"""The job scheduler: runs, measures and survives its jobs."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from prometheus_client import CollectorRegistry

from monitoring.jobs import FailingTargets, JobScheduler


def scheduler(
    timer: Callable[[], float] = time.perf_counter,
) -> tuple[JobScheduler, CollectorRegistry, InMemorySpanExporter]:
    registry, spans = CollectorRegistry(), InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(spans))
    return JobScheduler(registry, provider.get_tracer("test"), timer=timer), registry, spans


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


def test_each_job_exports_its_interval_and_when_its_latest_run_started() -> None:
    """What an alert needs to see a job that stopped running without failing: how often it
    should run, from its registration on, and when its latest run started (0: none yet)."""
    jobs, registry, _ = scheduler()
    jobs.add("drift", 60, lambda: "ok")
    labels = {"job": "drift"}

    def value(name: str) -> float | None:
        return registry.get_sample_value(name, labels)

    assert value("driftgate_job_interval_seconds") == 60.0
    assert value("driftgate_job_last_start_timestamp_seconds") == 0.0
    before = time.time()
    assert jobs.run_once(jobs.jobs[0])
    started = value("driftgate_job_last_start_timestamp_seconds")
    assert started is not None and before <= started
    assert started <= (value("driftgate_job_last_success_timestamp_seconds") or 0.0)


def test_a_run_that_never_returns_holds_up_every_job_of_the_scheduler() -> None:
    """Jobs run one at a time in one thread: a hung run raises nothing and ends nothing, so
    the only trace is time. Its start is later than its latest end, and the other jobs,
    due again and again, do not run (alert DriftgateJobOverdue)."""
    jobs, registry, _ = scheduler()
    release, hung = threading.Event(), threading.Event()
    ran: list[str] = []

    def stuck() -> None:  # a DuckDB query or a webhook that does not answer
        hung.set()
        release.wait(10)

    jobs.add("explain", 0.05, stuck)
    jobs.add("drift", 0.05, lambda: ran.append("drift"))
    jobs.start()
    try:
        assert hung.wait(5)
        ran.clear()
        time.sleep(1.5)  # three ticks of the scheduler, thirty intervals of drift
        assert ran == []

        def value(name: str, job: str) -> float:
            found = registry.get_sample_value(name, {"job": job})
            assert found is not None
            return found

        started = value("driftgate_job_last_start_timestamp_seconds", "explain")
        ended = max(
            value("driftgate_job_last_success_timestamp_seconds", "explain"),
            value("driftgate_job_last_failure_timestamp_seconds", "explain"),
        )
        assert started > ended
    finally:
        release.set()
        jobs.stop()


def test_job_durations_are_told_apart_from_seconds_to_an_hour() -> None:
    """A drift or explain run over a large window may take most of an hour: it must not
    read as the largest bucket (it did as 300 s), nor a 40-minute run as a 20-minute one."""
    clock = iter([0.0, 40 * 60.0, 0.0, 0.3]).__next__
    jobs, registry, _ = scheduler(timer=clock)
    jobs.add("drift", 3600, lambda: "ok")
    jobs.run_once(jobs.jobs[0])  # 40 minutes
    jobs.run_once(jobs.jobs[0])  # 0.3 s

    def runs_within(le: str) -> float | None:
        return registry.get_sample_value(
            "driftgate_job_duration_seconds_bucket", {"job": "drift", "le": le}
        )

    assert runs_within("0.1") == 0.0
    assert runs_within("0.5") == 1.0
    assert runs_within("1800.0") == 1.0
    assert runs_within("3600.0") == 2.0
    buckets = [
        sample.labels["le"]
        for metric in registry.collect()
        if metric.name == "driftgate_job_duration_seconds"
        for sample in metric.samples
        if sample.name.endswith("_bucket")
    ]
    assert len(buckets) <= 16  # a series per bucket and job: kept modest

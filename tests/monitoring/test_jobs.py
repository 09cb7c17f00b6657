"""The job scheduler: runs, measures and survives its jobs."""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable

import duckdb
import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from prometheus_client import CollectorRegistry

from monitoring.job_run import check_stop, watch_connection
from monitoring.jobs import JobScheduler


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
    """Jobs run one at a time: until its time limit (an hour here) a hung run raises
    nothing and ends nothing, so the only trace is time. Its start is later than its
    latest end, and the other jobs, due again and again, do not run (alert
    DriftgateJobOverdue)."""
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


# --- time limits ------------------------------------------------------------------------------

#: A DuckDB query that runs for hours: what a stuck query looks like to the scheduler.
ENDLESS_QUERY = "SELECT count(*) FROM range(1000000000000)"


def failure_count(registry: CollectorRegistry, job: str) -> float | None:
    return registry.get_sample_value("driftgate_job_runs_total", {"job": job, "outcome": "error"})


def test_a_run_past_its_time_limit_has_its_duckdb_query_interrupted_and_fails(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A run ran as long as its query did, holding up every job of the process, and
    counted as nothing: DriftgateJobOverdue said so, and nothing ended it."""
    jobs, registry, spans = scheduler()
    ended = threading.Event()

    def slow_query() -> None:
        con = duckdb.connect()
        try:
            watch_connection(con)
            con.execute(ENDLESS_QUERY).fetchall()
        finally:
            con.close()
            ended.set()

    jobs.add("drift", 60, slow_query, timeout_s=0.5)
    started = time.monotonic()

    assert not jobs.run_once(jobs.jobs[0])

    assert time.monotonic() - started < 5
    assert ended.is_set()  # the query itself was stopped, not only waited for
    assert jobs.jobs[0].straggler is None
    assert failure_count(registry, "drift") == 1
    failed = registry.get_sample_value(
        "driftgate_job_last_failure_timestamp_seconds", {"job": "drift"}
    )
    assert failed is not None and failed > 0
    (message,) = [r.getMessage() for r in caplog.records if r.name == "driftgate.jobs"]
    assert "job drift ran past its time limit of 0.5 s" in message
    (span,) = spans.get_finished_spans()
    assert span.name == "job drift" and not span.status.is_ok


def test_a_query_started_after_the_limit_passed_is_interrupted_too() -> None:
    """DuckDB forgets an interrupt that finds its connection between two queries: the
    scheduler keeps interrupting until the run returns."""
    jobs, _, _ = scheduler()
    ended = threading.Event()

    def busy_then_querying() -> None:
        con = duckdb.connect()
        try:
            watch_connection(con)
            time.sleep(0.6)  # Python work: the limit passes while the connection is idle
            con.execute(ENDLESS_QUERY).fetchall()
        finally:
            con.close()
            ended.set()

    jobs.add("drift", 60, busy_then_querying, timeout_s=0.2)
    jobs.stop_grace_s = 5.0
    started = time.monotonic()
    assert not jobs.run_once(jobs.jobs[0])
    assert ended.is_set() and jobs.jobs[0].straggler is None
    assert time.monotonic() - started < 3


def test_a_run_that_cannot_be_interrupted_is_left_behind_and_not_started_again(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A run waiting on something no interrupt reaches is given up on: counted as failed,
    and its job is not run again (beside it) until it returns."""
    jobs, registry, _ = scheduler()
    release = threading.Event()
    calls: list[int] = []

    def stuck() -> str:
        calls.append(1)
        if len(calls) == 1:
            release.wait(30)  # a webhook that never answers
        return "done"

    jobs.add("explain", 300, stuck, timeout_s=0.2)
    jobs.stop_grace_s = 0.2

    assert not jobs.run_once(jobs.jobs[0])
    assert "left running" in caplog.records[-1].getMessage()
    assert not jobs.run_once(jobs.jobs[0])  # still stuck: not started a second time
    assert calls == [1]
    assert failure_count(registry, "explain") == 2
    assert "has still not returned" in caplog.records[-1].getMessage()

    release.set()
    straggler = jobs.jobs[0].straggler
    assert straggler is not None
    straggler.join(5)
    assert jobs.run_once(jobs.jobs[0])
    assert calls == [1, 1]


def test_the_other_jobs_run_again_once_a_hung_run_reaches_its_limit() -> None:
    jobs, registry, _ = scheduler()
    ran: list[str] = []
    release = threading.Event()
    jobs.add("explain", 0.05, lambda: release.wait(30), timeout_s=0.3)
    jobs.add("drift", 0.05, lambda: ran.append("drift"))
    jobs.stop_grace_s = 0.1
    jobs.start()
    try:
        deadline = time.monotonic() + 10
        while len(ran) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert len(ran) >= 2
        assert (failure_count(registry, "explain") or 0) >= 1
    finally:
        release.set()
        jobs.stop()


def test_a_jobs_time_limit_is_an_hour_or_its_interval_when_longer() -> None:
    jobs, _, _ = scheduler()
    jobs.add("log_upkeep", 300, lambda: None)
    jobs.add("explain", 7200, lambda: None)
    jobs.add("drift", 60, lambda: None, timeout_s=120)
    assert [job.timeout_s for job in jobs.jobs] == [3600, 7200, 120]
    with pytest.raises(ValueError, match="time limit"):
        jobs.add("bad", 60, lambda: None, timeout_s=float("nan"))


def test_a_runs_spans_are_children_of_its_job_span() -> None:
    """Runs go in a thread of their own (so that the scheduler can stop waiting): the
    spans they make still belong to the job's trace."""
    jobs, _, spans = scheduler()
    tracer = jobs.runner.tracer

    def traced() -> None:
        with tracer.start_as_current_span("drift check"):
            pass

    jobs.add("drift", 60, traced)
    assert jobs.run_once(jobs.jobs[0])
    check, job = spans.get_finished_spans()
    assert job.name == "job drift"
    assert check.parent is not None and check.parent.span_id == job.context.span_id


# --- stopping ---------------------------------------------------------------------------------


def sample(registry: CollectorRegistry, name: str, **labels: str) -> float | None:
    return registry.get_sample_value(name, labels)


def started_run(jobs: JobScheduler, run: Callable[[], object], started: threading.Event) -> None:
    """Schedule ``run`` as job "drift" with an hour's time limit, start, wait until it runs."""
    jobs.add("drift", 60, run, timeout_s=3600)
    jobs.start()
    assert started.wait(10)


def test_stopping_the_scheduler_stops_the_run_under_way_and_counts_it_stopped(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A stop (SIGTERM to ``driftgate jobs``, the gateway shutting down) waited up to 30 s
    for the run and then abandoned it; a run of an hour was simply cut off by the exit."""
    jobs, registry, spans = scheduler()
    started, ended = threading.Event(), threading.Event()
    versions: list[int] = []

    def many_versions() -> str:  # a drift run over many model versions
        started.set()
        try:
            for version in range(36_000):
                check_stop()
                versions.append(version)
                time.sleep(0.1)
        finally:
            ended.set()
        return "all checked"

    started_run(jobs, many_versions, started)
    began = time.monotonic()
    jobs.stop()

    assert time.monotonic() - began < 2
    assert ended.is_set() and len(versions) < 100
    assert sample(registry, "driftgate_job_runs_total", job="drift", outcome="stopped") == 1
    assert sample(registry, "driftgate_job_runs_total", job="drift", outcome="error") is None
    assert sample(registry, "driftgate_job_runs_total", job="drift", outcome="ok") is None
    # Neither a failure (DriftgateJobFailing) nor a success.
    assert sample(registry, "driftgate_job_last_failure_timestamp_seconds", job="drift") == 0
    assert sample(registry, "driftgate_job_last_success_timestamp_seconds", job="drift") == 0
    assert any("job drift was stopped with the scheduler" in r.getMessage() for r in caplog.records)
    (span,) = spans.get_finished_spans()
    assert span.attributes is not None and span.attributes["driftgate.job.outcome"] == "stopped"


def test_a_stop_interrupts_the_duckdb_query_of_the_run_under_way() -> None:
    jobs, registry, _ = scheduler()
    started, ended = threading.Event(), threading.Event()

    def slow_query() -> None:
        con = duckdb.connect()
        try:
            watch_connection(con)
            started.set()
            con.execute(ENDLESS_QUERY).fetchall()
        finally:
            con.close()
            ended.set()

    started_run(jobs, slow_query, started)
    began = time.monotonic()
    jobs.stop()

    assert time.monotonic() - began < 3
    assert ended.is_set()  # the query itself was stopped
    assert sample(registry, "driftgate_job_runs_total", job="drift", outcome="stopped") == 1


def test_a_stop_leaves_behind_a_run_that_does_not_return_within_the_bound(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A run waiting on something nothing interrupts does not hold the process's exit."""
    jobs, registry, _ = scheduler()
    started, release = threading.Event(), threading.Event()

    def stuck() -> None:
        started.set()
        release.wait(30)

    jobs.stop_wait_s = 0.5
    try:
        started_run(jobs, stuck, started)
        began = time.monotonic()
        jobs.stop()
        assert time.monotonic() - began < 2.5
        assert sample(registry, "driftgate_job_runs_total", job="drift", outcome="stopped") == 1
        assert any("left running" in r.getMessage() for r in caplog.records)
    finally:
        release.set()


def test_a_run_due_in_the_instant_of_a_stop_does_not_start() -> None:
    """The loop decides to run a job, then stop() lands before the run is known to it:
    the run started anyway, and did its first unit of work before it saw the stop."""
    jobs, registry, _ = scheduler()
    ran = threading.Event()
    jobs.add("log_upkeep", 60, ran.set)
    jobs.stop()  # no loop thread: as if it had just passed its own check of the stop

    assert jobs.run_once(jobs.jobs[0]) is False
    assert not ran.is_set()
    assert sample(registry, "driftgate_job_runs_total", job="log_upkeep", outcome="stopped") == 1


def test_a_second_stop_keeps_the_first_ones_bound() -> None:
    """The gateway's lifespan and a signal may both stop the scheduler: the second call
    pushed the bound back by its own stop_wait_s, so a run past its time limit, being given
    its grace, held the process for up to twice the bound."""
    jobs, registry, _ = scheduler()
    started, release = threading.Event(), threading.Event()

    def stuck() -> None:
        started.set()
        release.wait(30)

    jobs.stop_wait_s, jobs.stop_grace_s = 1.0, 20.0
    jobs.add("drift", 60, stuck, timeout_s=0.2)
    try:
        jobs.start()
        assert started.wait(10)
        time.sleep(0.5)  # past its limit: interrupted, within its 20 s of grace
        began = time.monotonic()
        first = threading.Thread(target=jobs.stop)
        first.start()
        time.sleep(0.8)
        jobs.stop()
        first.join()
        assert time.monotonic() - began < 1.6
        assert sample(registry, "driftgate_job_runs_total", job="drift", outcome="error") == 1
    finally:
        release.set()


def test_a_stop_that_cuts_a_runs_grace_short_says_how_long_it_waited(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A run past its limit, given 20 s of grace, left behind by a stop about a second
    later: the log said it had not returned "20 s later", a time nobody waited."""
    jobs, _, _ = scheduler()
    started, release = threading.Event(), threading.Event()

    def stuck() -> None:
        started.set()
        release.wait(30)

    jobs.stop_wait_s, jobs.stop_grace_s = 1.0, 20.0
    jobs.add("drift", 60, stuck, timeout_s=0.2)
    try:
        jobs.start()
        assert started.wait(10)
        time.sleep(0.5)  # past its limit: within its grace
        jobs.stop()
        (message,) = [r.getMessage() for r in caplog.records if "left running" in r.getMessage()]
        waited = re.search(r"it has not returned ([\d.]+) s later", message)
        assert waited is not None, message
        assert 1.0 <= float(waited.group(1)) < 2.5  # the limit passed 0.3 s before the stop
    finally:
        release.set()

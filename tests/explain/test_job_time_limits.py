"""The explain job's runs end on time: a runtime that trickles its answer (body or headers)
is cut off at the run's time limit, and a stop ends the runtime call under way."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from opentelemetry import trace
from prometheus_client import CollectorRegistry

from monitoring.jobs import JobScheduler
from tests.explain.linear6 import Runtime, explain_job


def cut_at_the_time_limit(logged: str) -> bool:
    """The run ended at its 1.5 s limit: the runner's limit fired, or, a moment before it,
    the call's own deadline (``DeadlineTransport``: the time the run has left) ended the call
    and the run failed with it; which comes first depends on the machine's timing."""
    return (
        "job explain ran past its time limit of 1.5 s" in logged
        or "the answer did not arrive within 1." in logged
    )


def test_a_runtime_that_trickles_its_answer_is_cut_off_at_the_runs_time_limit(
    store: Path, runtime: Runtime, caplog: pytest.LogCaptureFixture
) -> None:
    """httpx's timeout bounds each read, so an answer arriving a byte at a time held the
    run for as long as the runtime kept sending: every job of the process waited."""
    runtime.trickle.set()
    jobs = JobScheduler(CollectorRegistry(), trace.NoOpTracer())
    jobs.stop_grace_s = 3.0
    jobs.add("explain", 300, explain_job(store, runtime).run, timeout_s=1.5)
    started = time.monotonic()

    assert not jobs.run_once(jobs.jobs[0])

    assert jobs.jobs[0].straggler is None  # the call itself ended, not only the wait
    assert time.monotonic() - started < 4.5
    assert cut_at_the_time_limit(caplog.text), caplog.text


def test_a_runtime_that_trickles_its_answers_headers_is_cut_off_at_the_runs_time_limit(
    store: Path, runtime: Runtime, caplog: pytest.LogCaptureFixture
) -> None:
    """The call's deadline was looked at between chunks of the body only: headers arriving
    a byte at a time held the run past its limit and its grace, and it was left running."""
    runtime.trickle_headers.set()
    jobs = JobScheduler(CollectorRegistry(), trace.NoOpTracer())
    jobs.stop_grace_s = 3.0
    jobs.add("explain", 300, explain_job(store, runtime).run, timeout_s=1.5)
    started = time.monotonic()

    assert not jobs.run_once(jobs.jobs[0])

    assert jobs.jobs[0].straggler is None  # the call itself ended, not only the wait
    assert time.monotonic() - started < 4.5
    assert cut_at_the_time_limit(caplog.text), caplog.text


def test_a_stop_ends_the_runtime_call_under_way_and_the_run_counts_as_stopped(
    store: Path, runtime: Runtime, caplog: pytest.LogCaptureFixture
) -> None:
    """A stop (SIGTERM to ``driftgate jobs``) reached a runtime call only when it returned:
    with a runtime trickling its answer, the run was left running 5 s later."""
    runtime.trickle.set()
    registry = CollectorRegistry()
    jobs = JobScheduler(registry, trace.NoOpTracer())
    jobs.add("explain", 300, explain_job(store, runtime).run, timeout_s=3600)
    jobs.start()
    assert runtime.trickling.wait(10)
    began = time.monotonic()

    jobs.stop()

    assert time.monotonic() - began < 2
    assert jobs.jobs[0].straggler is None  # the run returned
    stopped = {"job": "explain", "outcome": "stopped"}
    assert registry.get_sample_value("driftgate_job_runs_total", stopped) == 1
    assert "job explain was stopped with the scheduler" in caplog.text
    assert "left running" not in caplog.text

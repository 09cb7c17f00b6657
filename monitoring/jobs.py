"""A small scheduler for background jobs: log compaction and retention now, drift and
explain reports as those land.

Each job is a named callable run in one daemon thread, one at a time (jobs are I/O- and
DuckDB-heavy; running them in parallel on a small machine only makes each slower), next
``interval_s`` after its previous run ended. A failing run is logged, counted and retried
at the next tick; it never stops the others. How one run goes is ``monitoring.job_runner``:
in a thread of its own, stopped at its time limit (``timeout_s``; by default an hour, or
the interval when that is longer), and recorded as a span and metrics.

Stopping the scheduler (``stop``: SIGTERM to ``driftgate jobs``, ``driftgate up`` or the
gateway shutting down) starts no further run and does not wait for the run under way to
end by itself: it asks the run to stop (``JobRunner.stop``) and returns within about
``stop_wait_s`` (5 s, under the 10 s a supervisor gives before SIGKILL), leaving behind a
run that has not returned by then.

A thread that died runs no job, while /metrics still answers. Only time shows it: each
job's interval and time limit are exported (``driftgate_job_interval_seconds``,
``driftgate_job_time_limit_seconds``), so an alert can tell when a job's latest run ended
too long ago for its schedule while no run of the process is under way within its limit
(a run may legitimately take up to its limit, which can exceed an hour), and the start
time says which job holds the thread.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable

from opentelemetry import trace
from prometheus_client import CollectorRegistry, Gauge

from monitoring.job_runner import Job, JobRunner

#: A run's time limit is at least this (or its job's interval, when longer), unless set.
MIN_TIME_LIMIT_S = 3600.0


def default_time_limit(interval_s: float) -> float:
    """A run's time limit when its job sets none: an hour, or the interval when longer."""
    return max(MIN_TIME_LIMIT_S, interval_s)


class JobScheduler:
    """Runs each of its jobs every ``interval_s``, one run at a time, in a thread of its
    own once started; ``runner`` runs and records each run."""

    def __init__(
        self,
        registry: CollectorRegistry,
        tracer: trace.Tracer,
        *,
        timer: Callable[[], float] = time.perf_counter,
    ) -> None:
        self.jobs: list[Job] = []
        self.runner = JobRunner(registry, tracer, timer=timer)
        self._thread: threading.Thread | None = None
        self.interval = Gauge(
            "driftgate_job_interval_seconds",
            "Seconds from the end of one run of the job to the start of its next.",
            ["job"],
            registry=registry,
        )
        self.time_limit = Gauge(
            "driftgate_job_time_limit_seconds",
            "Seconds a run of the job may take before it is stopped and fails.",
            ["job"],
            registry=registry,
        )

    @property
    def stop_grace_s(self) -> float:
        """How long a run past its time limit gets to return once interrupted."""
        return self.runner.stop_grace_s

    @stop_grace_s.setter
    def stop_grace_s(self, seconds: float) -> None:
        self.runner.stop_grace_s = seconds

    @property
    def stop_wait_s(self) -> float:
        """How long ``stop`` waits for the run under way."""
        return self.runner.stop_wait_s

    @stop_wait_s.setter
    def stop_wait_s(self, seconds: float) -> None:
        self.runner.stop_wait_s = seconds

    def add(
        self,
        name: str,
        interval_s: float,
        run: Callable[[], object],
        first_delay_s: float = 0.0,
        timeout_s: float | None = None,
    ) -> None:
        """Run ``run`` every ``interval_s`` seconds, each run for at most ``timeout_s``
        (``default_time_limit(interval_s)`` when None)."""
        limit = default_time_limit(interval_s) if timeout_s is None else timeout_s
        if not (math.isfinite(limit) and limit > 0):
            raise ValueError(f"job {name}: time limit must be positive and finite, not {limit}")
        self.jobs.append(
            Job(name, interval_s, run, time.monotonic() + first_delay_s, timeout_s=limit)
        )
        self.interval.labels(name).set(interval_s)
        self.time_limit.labels(name).set(limit)
        self.runner.register(name)

    def run_once(self, job: Job) -> bool:
        """Run ``job`` now; True when it succeeded."""
        return self.runner.run_once(job)

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="jobs", daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        stopping = self.runner.stopping
        while not stopping.wait(0.5):
            for job in self.jobs:
                if time.monotonic() >= job.next_run and not stopping.is_set():
                    self.run_once(job)
                    job.next_run = time.monotonic() + job.interval_s

    def stop(self) -> None:
        """Stop running jobs: the run under way is asked to stop (``check_stop``) and its
        DuckDB queries are interrupted; returns within about ``stop_wait_s``, leaving a
        run that has not returned by then behind (the process is about to end)."""
        self.runner.stop()
        if self._thread is not None:
            self._thread.join(timeout=self.stop_wait_s + 1)

"""A small scheduler for background jobs: log compaction and retention now, drift and
explain reports as those land.

Each job is a named callable run in one daemon thread, one at a time (jobs are I/O- and
DuckDB-heavy; running them in parallel on a small machine only makes each slower), next
``interval_s`` after its previous run ended. A failing run is logged, counted and retried
at the next tick; it never stops the others. Every run is a span and a
``driftgate_job_runs_total`` sample, and sets ``driftgate_job_last_start_timestamp_seconds``
when it starts and ``driftgate_job_last_success_timestamp_seconds`` or
``driftgate_job_last_failure_timestamp_seconds`` when it ends: "the latest run failed and
none has succeeded since" is then one comparison of two gauges, whatever the job's
interval.

A run that never returns (a stuck query, a webhook that never answers) raises nothing: it
holds the one thread, so no job of the process runs again, and a thread that died runs
none, while /metrics still answers. Only time shows it: each job's interval is exported
(``driftgate_job_interval_seconds``), so an alert can tell when a job's latest run ended
too long ago for its schedule, and the start time says which job holds the thread.

A run that succeeds may still have failed some of its targets (one model version of the
drift job): ``FailingTargets`` is the gauge that shows which.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from opentelemetry import trace
from opentelemetry.trace import Status, StatusCode
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

log = logging.getLogger("driftgate.jobs")

#: Seconds of one run: log upkeep takes under a second, a drift or explain run over a large
#: window up to an hour. Longer runs fall in ``+Inf``, so quantiles read them as 7200.
DURATION_BUCKETS = (0.1, 0.5, 1, 5, 10, 30, 60, 120, 300, 600, 1200, 1800, 3600, 7200)


@dataclass
class Job:
    name: str
    interval_s: float
    run: Callable[[], object]
    next_run: float = 0.0


class JobScheduler:
    def __init__(
        self,
        registry: CollectorRegistry,
        tracer: trace.Tracer,
        *,
        timer: Callable[[], float] = time.perf_counter,
    ) -> None:
        self.jobs: list[Job] = []
        self.tracer = tracer
        self.timer = timer
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.runs = Counter(
            "driftgate_job_runs_total",
            "Background job runs by outcome.",
            ["job", "outcome"],
            registry=registry,
        )
        self.duration = Histogram(
            "driftgate_job_duration_seconds",
            "Duration of one background job run.",
            ["job"],
            buckets=DURATION_BUCKETS,
            registry=registry,
        )
        self.interval = Gauge(
            "driftgate_job_interval_seconds",
            "Seconds from the end of one run of the job to the start of its next.",
            ["job"],
            registry=registry,
        )
        self.last_start = Gauge(
            "driftgate_job_last_start_timestamp_seconds",
            "Unix time the latest run of the job in this process started (0: none).",
            ["job"],
            registry=registry,
        )
        # Both 0 until the job's first success or failure in this process, so that the
        # alert compares two series that exist from the start.
        self.last_success = Gauge(
            "driftgate_job_last_success_timestamp_seconds",
            "Unix time of the latest successful run of the job in this process (0: none).",
            ["job"],
            registry=registry,
        )
        self.last_failure = Gauge(
            "driftgate_job_last_failure_timestamp_seconds",
            "Unix time of the latest failed run of the job in this process (0: none).",
            ["job"],
            registry=registry,
        )

    def add(
        self, name: str, interval_s: float, run: Callable[[], object], first_delay_s: float = 0.0
    ) -> None:
        self.jobs.append(Job(name, interval_s, run, time.monotonic() + first_delay_s))
        self.interval.labels(name).set(interval_s)
        self.last_start.labels(name).set(0)
        self.last_success.labels(name).set(0)
        self.last_failure.labels(name).set(0)

    def run_once(self, job: Job) -> bool:
        """Run ``job`` now; True when it succeeded."""
        started = self.timer()
        self.last_start.labels(job.name).set(time.time())
        with self.tracer.start_as_current_span(f"job {job.name}") as span:
            try:
                result = job.run()
            except Exception as exc:
                span.record_exception(exc)
                span.set_status(Status(StatusCode.ERROR))
                self.runs.labels(job.name, "error").inc()
                self.last_failure.labels(job.name).set(time.time())
                log.exception("job %s failed", job.name)
                return False
            finally:
                self.duration.labels(job.name).observe(self.timer() - started)
            span.set_attribute("driftgate.job.result", str(result)[:1000])
        self.runs.labels(job.name, "ok").inc()
        self.last_success.labels(job.name).set(time.time())
        log.info("job %s: %s", job.name, result)
        return True

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="jobs", daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        while not self._stop.wait(0.5):
            for job in self.jobs:
                if time.monotonic() >= job.next_run and not self._stop.is_set():
                    self.run_once(job)
                    job.next_run = time.monotonic() + job.interval_s

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)


class FailingTargets:
    """Which targets (model versions) the latest run of a job could not handle.

    A gauge with one series per target the latest run met: 1 when it failed there, 0 when
    it handled or skipped it. A target the run no longer meets (its traffic stopped) loses
    its series, so it stops alerting. Targets come from the model repository and the log,
    never from error messages: the labels stay bounded.
    """

    def __init__(
        self,
        name: str,
        documentation: str,
        labels: Sequence[str],
        registry: CollectorRegistry | None,
    ) -> None:
        self._gauge = Gauge(name, documentation, list(labels), registry=registry)
        self._met: set[tuple[str, ...]] = set()

    def record(self, failed: Mapping[tuple[str, ...], bool]) -> None:
        """Replace the series with the latest run's: target label values -> it failed."""
        for target in self._met - failed.keys():
            self._gauge.remove(*target)
        for target, failure in failed.items():
            self._gauge.labels(*target).set(1.0 if failure else 0.0)
        self._met = set(failed)

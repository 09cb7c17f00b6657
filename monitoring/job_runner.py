"""One run of a background job, as the scheduler (``monitoring.jobs.JobScheduler``) makes
it: in a thread of its own, bounded by its time limit and by a stop, and recorded as it
ended.

Every run is a span and a ``driftgate_job_runs_total`` sample, and sets
``driftgate_job_last_start_timestamp_seconds`` when it starts and
``driftgate_job_last_success_timestamp_seconds`` or
``driftgate_job_last_failure_timestamp_seconds`` when it ends: "the latest run failed and
none has succeeded since" is then one comparison of two gauges, whatever the job's
interval. A failure is logged with its traceback, or in one line when its exception
explains itself (the store's catalog held by another process, naming its PID).

Every run has a time limit (``Job.timeout_s``). DuckDB queries have no timeout of their
own and httpx's bound each read, not a call, so a stuck query or a webhook that trickles
its answer would hold the scheduler's one thread, and no job of the process would run
again. A run therefore goes in a thread of its own (``job <name>``, under the job's span)
while the scheduler waits for it up to the limit. Past it, the run is asked to stop
(``monitoring.job_run``), its DuckDB connections (``watch_connection``) are interrupted
every ``INTERRUPT_EVERY_S``, since DuckDB forgets an interrupt that finds a connection
between two queries, and HTTP calls made through ``DeadlineTransport``
(``monitoring.deadline_transport``) end by themselves. The run is a failed run
(``JobTimeLimitExceeded``, so DriftgateJobFailing fires). A run that has still not
returned ``stop_grace_s`` later waits on something nothing here can interrupt: it is left
running, and its job does not start again (each due run fails, saying so) until it
returns.

A stop (``JobRunner.stop``, when the scheduler stops) starts no further run, asks the run
under way to stop and interrupts its DuckDB connections, as past the time limit, and
waits for it ``stop_wait_s`` at most (5 s, under the 10 s a supervisor gives before
SIGKILL), also a run past its limit that is being given its grace. Jobs check the stop
signal between units of work (``check_stop``: a model version, a partition; it raises
``RunStopped``), and HTTP calls see no time left (``run_time_left``). A run that ends
that way counts as ``outcome="stopped"``, neither a success nor a failure (neither
timestamp moves); one that has not returned by then is left behind, as past the limit.
"""

from __future__ import annotations

import contextvars
import logging
import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from opentelemetry import trace
from opentelemetry.trace import Status, StatusCode
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from monitoring.job_run import RunLimit, RunStopped, bind_run

log = logging.getLogger("driftgate.jobs")

#: Seconds of one run: log upkeep takes under a second, a drift or explain run over a large
#: window up to an hour. Longer runs fall in ``+Inf``, so quantiles read them as 7200.
DURATION_BUCKETS = (0.1, 0.5, 1, 5, 10, 30, 60, 120, 300, 600, 1200, 1800, 3600, 7200)
#: How long a run past its limit gets to return once interrupted, before it is left behind.
STOP_GRACE_S = 10.0
#: How long ``stop`` waits for the run under way, once asked to stop, before leaving it.
STOP_WAIT_S = 5.0
#: How often a run past its limit has its DuckDB connections interrupted.
INTERRUPT_EVERY_S = 0.1


class JobTimeLimitExceeded(TimeoutError):
    """A run went past its time limit (or the previous one still has not returned)."""


@dataclass
class Job:
    """A job as the scheduler keeps it: what to run, how often, and each run's limit."""

    name: str
    interval_s: float
    run: Callable[[], object]
    next_run: float
    timeout_s: float
    #: A run stopped at its time limit that has not returned: none starts until it has.
    straggler: threading.Thread | None = None


class JobRunner:
    """Runs one job run at a time, bounded by its time limit and by ``stop``, and records
    how each ended; cheap to construct (it registers its metrics on ``registry``)."""

    def __init__(
        self,
        registry: CollectorRegistry,
        tracer: trace.Tracer,
        *,
        timer: Callable[[], float] = time.perf_counter,
    ) -> None:
        self.tracer = tracer
        self.timer = timer
        self.stop_grace_s = STOP_GRACE_S
        self.stop_wait_s = STOP_WAIT_S
        #: Set by ``stop``: no run starts from then on.
        self.stopping = threading.Event()
        self._stop_deadline = math.inf  # when stop() stops waiting for the run under way
        self._running: RunLimit | None = None
        self._lock = threading.Lock()
        self.runs = Counter(
            "driftgate_job_runs_total",
            "Background job runs by outcome (ok|error|stopped).",
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

    def register(self, name: str) -> None:
        """Export the times of job ``name``'s runs from now on, 0 until its first run."""
        self.last_start.labels(name).set(0)
        self.last_success.labels(name).set(0)
        self.last_failure.labels(name).set(0)

    def run_once(self, job: Job) -> bool:
        """Run ``job`` now; True when it succeeded."""
        started = self.timer()
        self.last_start.labels(job.name).set(time.time())
        with self.tracer.start_as_current_span(f"job {job.name}") as span:
            try:
                result = self._run_limited(job)
            except RunStopped as exc:
                # Neither a success nor a failure: the process is going away mid-run.
                span.set_attribute("driftgate.job.outcome", "stopped")
                self.runs.labels(job.name, "stopped").inc()
                log.warning("%s", exc)
                return False
            except Exception as exc:
                span.record_exception(exc)
                span.set_status(Status(StatusCode.ERROR))
                span.set_attribute("driftgate.job.outcome", "error")
                self.runs.labels(job.name, "error").inc()
                self.last_failure.labels(job.name).set(time.time())
                explained = _self_explained(exc)
                if isinstance(exc, JobTimeLimitExceeded):
                    log.error("%s", exc)
                elif explained is not None:  # a condition of the moment, not a bug
                    log.error("job %s failed: %s", job.name, explained)
                else:
                    log.exception("job %s failed", job.name)
                return False
            finally:
                self.duration.labels(job.name).observe(self.timer() - started)
            span.set_attribute("driftgate.job.outcome", "ok")
            span.set_attribute("driftgate.job.result", str(result)[:1000])
        self.runs.labels(job.name, "ok").inc()
        self.last_success.labels(job.name).set(time.time())
        log.info("job %s: %s", job.name, result)
        return True

    def stop(self) -> None:
        """Start no run from now on, and have the run under way asked to stop and its
        DuckDB queries interrupted; it is waited for ``stop_wait_s`` at most from the
        first stop. Returns at once."""
        # A second stop (the gateway's lifespan and a signal) keeps the first one's bound.
        self._stop_deadline = min(self._stop_deadline, time.monotonic() + self.stop_wait_s)
        self.stopping.set()
        with self._lock:
            running = self._running
        if running is not None:
            running.cancel()

    def _run_limited(self, job: Job) -> object:
        """``job.run()`` in a thread of its own, waited for up to the job's time limit or
        until ``stop``."""
        if job.straggler is not None:
            if job.straggler.is_alive():
                raise JobTimeLimitExceeded(
                    f"job {job.name} not run: its previous run, past its time limit, has "
                    "still not returned (it waits on something that cannot be interrupted)"
                )
            job.straggler = None
        limit = RunLimit(job.timeout_s)
        outcome: list[tuple[object, BaseException | None]] = []

        def run() -> None:
            bind_run(limit)
            try:
                outcome.append((job.run(), None))
            except BaseException as exc:  # handed to the scheduler's thread
                outcome.append((None, exc))
            finally:
                limit.finish()

        # The copied context carries the job's span, so the run's spans are its children.
        context = contextvars.copy_context()
        worker = threading.Thread(
            target=context.run, args=(run,), name=f"job {job.name}", daemon=True
        )
        with self._lock:
            # stop() reads _running under this lock once stopping is set: a run either sees
            # the stop here, or is seen (and cancelled) by it.
            if self.stopping.is_set():
                raise RunStopped(f"job {job.name} not started: the scheduler is stopping")
            self._running = limit
        try:
            worker.start()
            waited = self._wait(limit)
        finally:
            with self._lock:
                self._running = None
        stopped = f"job {job.name} ran past its time limit of {job.timeout_s:g} s and was stopped"
        if waited is not None:
            job.straggler = worker
            # The time waited, not the grace: a stop cuts a time limit's grace short.
            if limit.timed_out:
                raise JobTimeLimitExceeded(
                    f"{stopped}; it has not returned {waited:.1f} s later (it waits on "
                    f"something that cannot be interrupted) and is left running: no run of "
                    f"{job.name} starts until it returns"
                )
            raise RunStopped(
                f"job {job.name} was asked to stop with the scheduler and has not returned "
                f"{waited:.1f} s later: it is left running"
            )
        result, error = outcome[0]
        if limit.timed_out:
            raise JobTimeLimitExceeded(stopped) from error
        if limit.cancelled and error is not None:
            raise RunStopped(f"job {job.name} was stopped with the scheduler ({error})") from error
        if error is not None:
            raise error
        return result

    def _wait(self, limit: RunLimit) -> float | None:
        """Until the run returns; past its time limit, or once the scheduler stops, ask it
        to stop and interrupt its queries for a grace period. None when it returned, else
        the seconds it was waited for once asked to stop."""
        while not limit.ended.is_set():
            if self.stopping.is_set():
                limit.cancel()  # also when stop() came before this run was known to it
                return self._wind_down(limit, self.stop_wait_s)
            if limit.remaining() <= 0:
                limit.timed_out = True
                return self._wind_down(limit, self.stop_grace_s)
            limit.wake.wait(max(limit.remaining(), 0.0))
        return None

    def _wind_down(self, limit: RunLimit, grace_s: float) -> float | None:
        """Ask the run to stop and interrupt its queries until it returns, for ``grace_s``
        at most (less once the scheduler stops); None when it returned, else the seconds
        waited."""
        limit.stopping.set()
        began = time.monotonic()
        limit.interrupt()
        while not limit.ended.wait(INTERRUPT_EVERY_S):
            now = time.monotonic()
            if now >= min(began + grace_s, self._stop_deadline):
                return now - began
            limit.interrupt()  # a query started since the last interrupt
        return None


def _self_explained(error: BaseException | None) -> BaseException | None:
    """The exception in ``error``'s chain whose message says all there is to say (its class
    sets ``explains_itself``: the store's catalog held by another process, naming its PID),
    so that the failure is logged in one line rather than with a traceback; None if none."""
    seen: set[int] = set()
    while error is not None and id(error) not in seen:
        if getattr(error, "explains_itself", False):
            return error
        seen.add(id(error))
        error = error.__cause__ or error.__context__
    return None

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

Every run has a time limit (``timeout_s``; by default an hour, or the interval when that is
longer). DuckDB queries have no timeout of their own and httpx's bound each read, not a
call, so a stuck query or a webhook that trickles its answer would hold the one thread,
and no job of the process would run again. A run therefore goes in a thread of its own
(``job <name>``, under the job's span) while the scheduler waits for it up to the limit.
Past it, the run is asked to stop (``monitoring.job_run``), the scheduler interrupts the
DuckDB connections the run registered (``watch_connection``), every ``INTERRUPT_EVERY_S``
since DuckDB forgets an interrupt that finds a connection between two queries, and HTTP
calls made through ``DeadlineTransport`` end by themselves. The run is a failed run
(``JobTimeLimitExceeded``, so DriftgateJobFailing fires). A run that has still not
returned ``stop_grace_s`` later waits on something nothing here can interrupt: it is left
running, and its job does not start again (each due run fails, saying so) until it
returns.

Stopping the scheduler (``stop``: SIGTERM to ``driftgate jobs``, ``driftgate up`` or the
gateway shutting down) does not wait for the run under way to end by itself: it asks the
run to stop and interrupts its DuckDB connections, as past the time limit, and returns
within ``stop_wait_s`` (5 s, under the 10 s a supervisor gives before SIGKILL). Jobs check
the stop signal between units of work (``check_stop``: a model version, a partition; it
raises ``RunStopped``), and HTTP calls see no time left (``run_time_left``). A run that
ends that way counts as ``outcome="stopped"``, neither a success nor a failure (neither
timestamp moves); one that has not returned by then is left behind, as past the limit.

A thread that died runs no job, while /metrics still answers. Only time shows it: each
job's interval and time limit are exported (``driftgate_job_interval_seconds``,
``driftgate_job_time_limit_seconds``), so an alert can tell when a job's latest run ended
too long ago for its schedule while no run of the process is under way within its limit
(a run may legitimately take up to its limit, which can exceed an hour), and the start
time says which job holds the thread.

A run that succeeds may still have failed some of its targets (one model version of the
drift job): ``FailingTargets`` is the gauge that shows which.
"""

from __future__ import annotations

import contextvars
import logging
import math
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import cast

import httpx
from opentelemetry import trace
from opentelemetry.trace import Status, StatusCode
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from monitoring.job_run import RunLimit, RunStopped, bind_run, run_time_left

log = logging.getLogger("driftgate.jobs")

#: Seconds of one run: log upkeep takes under a second, a drift or explain run over a large
#: window up to an hour. Longer runs fall in ``+Inf``, so quantiles read them as 7200.
DURATION_BUCKETS = (0.1, 0.5, 1, 5, 10, 30, 60, 120, 300, 600, 1200, 1800, 3600, 7200)
#: A run's time limit is at least this (or its job's interval, when longer), unless set.
MIN_TIME_LIMIT_S = 3600.0
#: How long a run past its limit gets to return once interrupted, before it is left behind.
STOP_GRACE_S = 10.0
#: How long ``stop`` waits for the run under way, once asked to stop, before leaving it.
STOP_WAIT_S = 5.0
#: How often a run past its limit has its DuckDB connections interrupted.
INTERRUPT_EVERY_S = 0.1


def default_time_limit(interval_s: float) -> float:
    """A run's time limit when its job sets none: an hour, or the interval when longer."""
    return max(MIN_TIME_LIMIT_S, interval_s)


class JobTimeLimitExceeded(TimeoutError):
    """A run went past its time limit (or the previous one still has not returned)."""


@dataclass
class Job:
    name: str
    interval_s: float
    run: Callable[[], object]
    next_run: float = 0.0
    timeout_s: float = MIN_TIME_LIMIT_S
    #: A run stopped at its time limit that has not returned: none starts until it has.
    straggler: threading.Thread | None = None


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
        self.stop_grace_s = STOP_GRACE_S
        self.stop_wait_s = STOP_WAIT_S
        self._stop = threading.Event()
        self._stop_deadline = math.inf  # when stop() stops waiting for the run under way
        self._thread: threading.Thread | None = None
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

    def _run_limited(self, job: Job) -> object:
        """``job.run()`` in a thread of its own, waited for up to the job's time limit or
        until the scheduler stops."""
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
            # stop() reads _running under this lock once _stop is set: a run either sees
            # the stop here, or is seen (and cancelled) by it.
            if self._stop.is_set():
                raise RunStopped(f"job {job.name} not started: the scheduler is stopping")
            self._running = limit
        try:
            worker.start()
            returned = self._wait(limit)
        finally:
            with self._lock:
                self._running = None
        stopped = f"job {job.name} ran past its time limit of {job.timeout_s:g} s and was stopped"
        if not returned:
            job.straggler = worker
            if limit.timed_out:
                raise JobTimeLimitExceeded(
                    f"{stopped}; it has not returned {self.stop_grace_s:g} s later (it waits "
                    f"on something that cannot be interrupted) and is left running: no run "
                    f"of {job.name} starts until it returns"
                )
            raise RunStopped(
                f"job {job.name} was asked to stop with the scheduler and has not returned "
                f"{self.stop_wait_s:g} s later: it is left running"
            )
        result, error = outcome[0]
        if limit.timed_out:
            raise JobTimeLimitExceeded(stopped) from error
        if limit.cancelled and error is not None:
            raise RunStopped(f"job {job.name} was stopped with the scheduler ({error})") from error
        if error is not None:
            raise error
        return result

    def _wait(self, limit: RunLimit) -> bool:
        """Until the run returns; past its time limit, or once the scheduler stops, ask it
        to stop and interrupt its queries for a grace period. Whether it returned."""
        while not limit.ended.is_set():
            if self._stop.is_set():
                limit.cancel()  # also when stop() came before this run was known to it
                return self._wind_down(limit, self.stop_wait_s)
            if limit.remaining() <= 0:
                limit.timed_out = True
                return self._wind_down(limit, self.stop_grace_s)
            limit.wake.wait(max(limit.remaining(), 0.0))
        return True

    def _wind_down(self, limit: RunLimit, grace_s: float) -> bool:
        """Ask the run to stop and interrupt its queries until it returns, for ``grace_s``
        at most (less once the scheduler stops); whether it returned."""
        limit.stopping.set()
        give_up = time.monotonic() + grace_s
        limit.interrupt()
        while not limit.ended.wait(INTERRUPT_EVERY_S):
            if time.monotonic() >= min(give_up, self._stop_deadline):
                return False
            limit.interrupt()  # a query started since the last interrupt
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
        """Stop running jobs: the run under way is asked to stop (``check_stop``) and its
        DuckDB queries are interrupted; returns within about ``stop_wait_s``, leaving a
        run that has not returned by then behind (the process is about to end)."""
        # A second stop (the gateway's lifespan and a signal) keeps the first one's bound.
        self._stop_deadline = min(self._stop_deadline, time.monotonic() + self.stop_wait_s)
        self._stop.set()
        with self._lock:
            running = self._running
        if running is not None:
            running.cancel()
        if self._thread is not None:
            self._thread.join(timeout=self.stop_wait_s + 1)


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


class DeadlineTransport(httpx.BaseTransport):
    """An httpx transport that bounds each call as a whole: ``call_s`` seconds, and never
    past the time limit of the job run in progress.

    httpx's timeouts bound each network operation (connecting, one read), so an answer
    that trickles in, a few bytes within each read's timeout, never times out. Here every
    operation of a call gets only the time left of the call, and the body is checked
    between chunks: a call ends within about twice ``call_s`` (the last read may take what
    was left when the call started), raising ``httpx.TimeoutException``.
    """

    def __init__(self, call_s: float, inner: httpx.BaseTransport | None = None) -> None:
        self.call_s = call_s
        self._inner = inner if inner is not None else httpx.HTTPTransport()

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        left = self.call_s
        run_left = run_time_left()
        if run_left is not None:
            left = min(left, run_left)
        if left <= 0:
            raise httpx.ConnectTimeout("the job run's time limit has passed", request=request)
        deadline = time.monotonic() + left
        request.extensions["timeout"] = dict.fromkeys(("connect", "read", "write", "pool"), left)
        response = self._inner.handle_request(request)
        stream = cast(httpx.SyncByteStream, response.stream)
        return httpx.Response(
            response.status_code,
            headers=response.headers,
            stream=_DeadlineStream(stream, deadline, left, request),
            extensions=response.extensions,
        )

    def close(self) -> None:
        self._inner.close()


class _DeadlineStream(httpx.SyncByteStream):
    def __init__(
        self, stream: httpx.SyncByteStream, deadline: float, seconds: float, request: httpx.Request
    ) -> None:
        self._stream = stream
        self._deadline = deadline
        self._seconds = seconds
        self._request = request

    def __iter__(self) -> Iterator[bytes]:
        for chunk in self._stream:
            if time.monotonic() > self._deadline:
                raise httpx.ReadTimeout(
                    f"the answer did not arrive within {self._seconds:.3g} s", request=self._request
                )
            yield chunk

    def close(self) -> None:
        self._stream.close()

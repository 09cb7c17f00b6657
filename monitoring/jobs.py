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
Past it, the scheduler interrupts the DuckDB connections the run registered
(``watch_connection``), every ``INTERRUPT_EVERY_S`` since DuckDB forgets an interrupt that
finds a connection between two queries, and HTTP calls made through ``DeadlineTransport``
end by themselves. The run is a failed run (``JobTimeLimitExceeded``, so
DriftgateJobFailing fires). A run that has still not returned ``stop_grace_s`` later waits
on something nothing here can interrupt: it is left running, and its job does not start
again (each due run fails, saying so) until it returns.

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

import contextlib
import contextvars
import logging
import math
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol, cast

import httpx
from opentelemetry import trace
from opentelemetry.trace import Status, StatusCode
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

log = logging.getLogger("driftgate.jobs")

#: Seconds of one run: log upkeep takes under a second, a drift or explain run over a large
#: window up to an hour. Longer runs fall in ``+Inf``, so quantiles read them as 7200.
DURATION_BUCKETS = (0.1, 0.5, 1, 5, 10, 30, 60, 120, 300, 600, 1200, 1800, 3600, 7200)
#: A run's time limit is at least this (or its job's interval, when longer), unless set.
MIN_TIME_LIMIT_S = 3600.0
#: How long a run past its limit gets to return once interrupted, before it is left behind.
STOP_GRACE_S = 10.0
#: How often a run past its limit has its DuckDB connections interrupted.
INTERRUPT_EVERY_S = 0.1


def default_time_limit(interval_s: float) -> float:
    """A run's time limit when its job sets none: an hour, or the interval when longer."""
    return max(MIN_TIME_LIMIT_S, interval_s)


class JobTimeLimitExceeded(TimeoutError):
    """A run went past its time limit (or the previous one still has not returned)."""


class Interruptible(Protocol):
    """What a run's time limit interrupts: a DuckDB connection."""

    def interrupt(self) -> object: ...


class RunLimit:
    """The time limit of one run, and the DuckDB connections it interrupts once past."""

    def __init__(self, seconds: float) -> None:
        self.deadline = time.monotonic() + seconds
        self._lock = threading.Lock()
        self._connections: list[Interruptible] = []

    def remaining(self) -> float:
        return self.deadline - time.monotonic()

    def watch(self, con: Interruptible) -> None:
        with self._lock:
            if not any(known is con for known in self._connections):
                self._connections.append(con)

    def interrupt(self) -> None:
        """Stop every query the run's connections are running (from another thread)."""
        with self._lock:
            connections = list(self._connections)
        for con in connections:
            with contextlib.suppress(Exception):  # closed already: nothing to stop
                con.interrupt()


_CURRENT_RUN: contextvars.ContextVar[RunLimit | None] = contextvars.ContextVar(
    "driftgate_job_run", default=None
)


def watch_connection(con: Interruptible) -> None:
    """Have the time limit of the job run in progress interrupt ``con``'s queries; nothing
    outside a scheduled run. Call it for every DuckDB connection a job opens."""
    limit = _CURRENT_RUN.get()
    if limit is not None:
        limit.watch(con)


def run_time_left() -> float | None:
    """Seconds left before the time limit of the job run in progress; None outside one."""
    limit = _CURRENT_RUN.get()
    return None if limit is None else limit.remaining()


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
            except Exception as exc:
                span.record_exception(exc)
                span.set_status(Status(StatusCode.ERROR))
                self.runs.labels(job.name, "error").inc()
                self.last_failure.labels(job.name).set(time.time())
                if isinstance(exc, JobTimeLimitExceeded):
                    log.error("%s", exc)
                else:
                    log.exception("job %s failed", job.name)
                return False
            finally:
                self.duration.labels(job.name).observe(self.timer() - started)
            span.set_attribute("driftgate.job.result", str(result)[:1000])
        self.runs.labels(job.name, "ok").inc()
        self.last_success.labels(job.name).set(time.time())
        log.info("job %s: %s", job.name, result)
        return True

    def _run_limited(self, job: Job) -> object:
        """``job.run()`` in a thread of its own, waited for up to the job's time limit."""
        if job.straggler is not None:
            if job.straggler.is_alive():
                raise JobTimeLimitExceeded(
                    f"job {job.name} not run: its previous run, past its time limit, has "
                    "still not returned (it waits on something that cannot be interrupted)"
                )
            job.straggler = None
        limit = RunLimit(job.timeout_s)
        outcome: list[tuple[object, BaseException | None]] = []
        done = threading.Event()

        def run() -> None:
            _CURRENT_RUN.set(limit)
            try:
                outcome.append((job.run(), None))
            except BaseException as exc:  # handed to the scheduler's thread
                outcome.append((None, exc))
            finally:
                done.set()

        # The copied context carries the job's span, so the run's spans are its children.
        context = contextvars.copy_context()
        worker = threading.Thread(
            target=context.run, args=(run,), name=f"job {job.name}", daemon=True
        )
        worker.start()
        if not done.wait(job.timeout_s):
            self._stop_run(job, limit, worker, done, outcome)
        result, error = outcome[0]
        if error is not None:
            raise error
        return result

    def _stop_run(
        self,
        job: Job,
        limit: RunLimit,
        worker: threading.Thread,
        done: threading.Event,
        outcome: list[tuple[object, BaseException | None]],
    ) -> None:
        """Interrupt a run past its limit, and raise ``JobTimeLimitExceeded``."""
        give_up = time.monotonic() + self.stop_grace_s
        limit.interrupt()
        while not done.wait(INTERRUPT_EVERY_S) and time.monotonic() < give_up:
            limit.interrupt()  # a query started since the last interrupt
        message = f"job {job.name} ran past its time limit of {job.timeout_s:g} s and was stopped"
        if not done.is_set():
            job.straggler = worker
            raise JobTimeLimitExceeded(
                f"{message}; it has not returned {self.stop_grace_s:g} s later (it waits on "
                f"something that cannot be interrupted) and is left running: no run of "
                f"{job.name} starts until it returns"
            )
        raise JobTimeLimitExceeded(message) from outcome[0][1]

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

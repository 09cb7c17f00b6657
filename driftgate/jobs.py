"""``driftgate jobs``: the background jobs as their own process.

It reads the same gateway.yaml as the gateway: ``log.store`` (the store the jobs read and
write), ``replicas`` (the runtime the explain job calls) and the ``drift:`` and
``explain:`` sections. ``driftgate up`` starts it as a supervised child, passing the
replicas it supervises with ``--replica`` (they override ``replicas``: under ``up`` the
file lists none); on Kubernetes it is a CronJob running ``driftgate jobs --once``. Without
any replica the explain job is not scheduled (a warning says so).

Its own ``/metrics`` (``--metrics-port``) carries each job's runs, durations, interval and
the times of its latest start, good run and failed run (``driftgate_job_*``), the model
versions the drift and explain jobs' latest runs could not handle
(``driftgate_drift_check_failing``, ``driftgate_explain_check_failing``) and webhook sends;
the drift and importance gauges are served by the gateway, computed at scrape time from
the latest results in the store (``monitoring.job_results``).

Before any job runs, the paths are checked: ``log.store`` must already be a store for
``--once`` (a CronJob pointed at a typo must not report an empty store as all clear; the
gateway creates the store), while the long-running process, which may start before the
gateway has created it, creates it; the ``models`` folder of every scheduled drift or
explain job must exist. ``--once`` exits 1 when a job failed, and a drift or explain run
fails when every model version it tried failed. A run that failed because another process
holds the store's catalog open read-write (``CatalogBusy``) is a condition of the moment:
its failure is one line naming the holder's PID, not a traceback (``monitoring.job_runner``).
"""

from __future__ import annotations

import logging
import os
import signal
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from prometheus_client import CollectorRegistry, start_http_server

from monitoring.jobs import JobScheduler
from monitoring.log_jobs import schedule_log_upkeep
from monitoring.metrics import new_registry
from monitoring.tracing import build_tracer_provider

log = logging.getLogger("driftgate.jobs")


class JobsConfigError(ValueError):
    """gateway.yaml cannot run the jobs; the message names the key."""


@dataclass
class JobsProcess:
    scheduler: JobScheduler
    registry: CollectorRegistry
    names: list[str]
    #: The store the jobs read and write, and the model repository each job reads.
    store: Path | None = None
    repositories: dict[str, Path] = field(default_factory=dict)

    def path_problem(self, *, once: bool) -> str | None:
        """What is wrong with the store or a job's model repository, or None."""
        from gateway.log_settings import store_problem

        if self.store is not None:
            problem = store_problem(self.store, create=not once)
            if problem is not None:
                return f"log.store: {problem}"
        for name, repository in self.repositories.items():
            if name in self.names and not repository.is_dir():
                return f"{name}.models: no model repository at {repository}"
        return None


def build_jobs(
    config: Path,
    *,
    log_upkeep: bool = False,
    replicas: Sequence[str] | None = None,
    only: Sequence[str] = (),
) -> JobsProcess:
    """Every job gateway.yaml asks for (or those named in ``only``), on one scheduler (not
    started). ``replicas`` (runtime URLs) replace gateway.yaml's for the explain job."""
    from drift.alerts import WebhookNotifier
    from drift.job import DriftJob
    from drift.settings import parse_drift_section
    from explain.job import ExplainJob
    from explain.settings import parse_explain_section
    from gateway.settings import GatewaySettings, SettingsError

    try:
        settings = GatewaySettings.from_file(config)
        drift = parse_drift_section(settings.jobs.get("drift"))
        explain = parse_explain_section(settings.jobs.get("explain"))
    except (SettingsError, ValueError) as exc:
        raise JobsConfigError(str(exc)) from None
    if settings.log is None:
        raise JobsConfigError(
            f"{config}: no `log:` section, so there is no prediction log to run jobs on"
        )
    registry = new_registry()
    tracer = build_tracer_provider("driftgate-jobs").get_tracer("driftgate.jobs")
    scheduler = JobScheduler(registry, tracer)
    store = settings.log.store
    wanted = set(only) or {"drift", "explain", "log_upkeep"}
    if log_upkeep and "log_upkeep" in wanted:
        schedule_log_upkeep(scheduler, store, settings.log.writer)
    if drift.enabled and "drift" in wanted:
        notifier = (
            WebhookNotifier(drift.webhook, drift.external_url, registry=registry)
            if drift.webhook
            else None
        )
        job = DriftJob(
            store,
            drift,
            drift.repository(settings.base_dir),
            tracer,
            notifier=notifier,
            registry=registry,
        )
        scheduler.add("drift", drift.interval_s, job.run, timeout_s=drift.run_limit_s())
    repositories = {
        "drift": drift.repository(settings.base_dir),
        "explain": explain.repository(settings.base_dir),
    }
    runtimes = tuple(url.rstrip("/") for url in replicas) if replicas else settings.replicas
    if not runtimes and settings.discovery is not None:
        runtimes = (settings.discovery.url,)  # the name resolves to some replica each call
    explain_wanted = explain.enabled and "explain" in wanted
    if explain_wanted and not runtimes:
        log.warning("explain job not scheduled: no runtime replicas (replicas: or --replica)")
    elif explain_wanted:
        explainer = ExplainJob(
            store,
            explain,
            explain.repository(settings.base_dir),
            runtimes,
            tracer,
            registry=registry,
        )
        scheduler.add("explain", explain.interval_s, explainer.run, timeout_s=explain.run_limit_s())
    names = [job.name for job in scheduler.jobs]
    return JobsProcess(scheduler, registry, names, store, repositories)


def run_jobs(
    config: Path,
    *,
    once: bool,
    metrics_port: int | None,
    log_upkeep: bool,
    metrics_host: str = "127.0.0.1",
    replicas: Sequence[str] | None = None,
    only: Sequence[str] = (),
) -> int:
    """Run the jobs until SIGTERM (or each once with ``once``); ``only`` names the jobs to
    run (``drift``, ``explain``, ``log_upkeep``), all of them when empty."""
    # The explain job's predict calls would log every request at INFO.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    try:
        process = build_jobs(config, log_upkeep=log_upkeep, replicas=replicas, only=only)
    except JobsConfigError as exc:
        log.error("%s", exc)
        return 2
    if only:
        unknown = sorted(set(only) - set(process.names))
        if unknown:
            log.error("no job %s here; scheduled: %s", unknown, ", ".join(process.names))
            return 2
        process.scheduler.jobs = [job for job in process.scheduler.jobs if job.name in only]
        process.names = [job.name for job in process.scheduler.jobs]
    problem = process.path_problem(once=once)
    if problem is not None:
        log.error("%s: %s", config, problem)
        return 2
    if once:
        failed = [job.name for job in process.scheduler.jobs if not process.scheduler.run_once(job)]
        return 1 if failed else 0
    # The handlers go in before /metrics answers: whoever saw it up may signal at once.
    stop_signals = StopSignals()
    if metrics_port is not None:
        try:
            start_http_server(metrics_port, addr=metrics_host, registry=process.registry)
        except OSError as exc:  # in use, or an address this host does not have
            log.error("cannot serve /metrics on %s port %d: %s", metrics_host, metrics_port, exc)
            return 2
    log.info("jobs running: %s", ", ".join(process.names) or "none")
    process.scheduler.start()
    log.info("stopping on %s", stop_signals.wait().name)
    process.scheduler.stop()
    return 0


class StopSignals:
    """From its creation until the process exits, SIGTERM and SIGINT only wake ``wait``;
    later ones are ignored, so a supervisor that signals again while the jobs stop cannot
    cut the stop short. Create it in the main thread (Python installs handlers only there).

    The kernel hands a process-directed signal to any thread that does not block it, and
    native threads (OpenBLAS starts one when numpy is imported) do not block it, so a
    signal mask cannot catch every arrival. Instead the handlers do nothing and Python's
    C-level handler writes the signal's number to a wakeup pipe, from whichever thread it
    ran in; ``wait`` reads that pipe (raw descriptors, never closed: the process ends
    first). A handler that did work (such as ``Event.set``) could deadlock when a second
    signal landed while the first ran.
    """

    NUMBERS = (signal.SIGTERM, signal.SIGINT)

    def __init__(self) -> None:
        self._read_fd, write_fd = os.pipe()
        os.set_blocking(write_fd, False)
        signal.set_wakeup_fd(write_fd, warn_on_full_buffer=False)
        for number in self.NUMBERS:
            signal.signal(number, _ignore_stop_signal)

    def wait(self) -> signal.Signals:
        """Block until SIGTERM or SIGINT arrives (or arrived since creation); name it.

        From then on both are ignored (``SIG_IGN``), not merely handled: the interpreter's
        shutdown puts the default action back for signals with a Python handler, and a
        SIGTERM landing then would kill the process (exit -15) after a clean stop."""
        while True:
            for number in os.read(self._read_fd, 64):
                if number in self.NUMBERS:
                    for ignored in self.NUMBERS:
                        signal.signal(ignored, signal.SIG_IGN)
                    return signal.Signals(number)


def _ignore_stop_signal(number: int, frame: object) -> None:
    """A handler that does nothing: the wakeup pipe carries the signal (see above)."""

"""Scheduled upkeep of the prediction log: compaction and retention.

``schedule_log_upkeep`` registers one job on a ``JobScheduler``; the gateway runs it in
process (``driftgate up``), and ``driftgate jobs`` runs it where the gateway does not.

A run normally takes under a second. One asked to stop (the gateway or the jobs process
shutting down, or the run past its time limit, by default an hour: a store on a mount
that stopped answering) has the merge under way interrupted and compacts no further
partition (``monitoring.prediction_log.maintenance``): every partition is left either
merged or as it was, and the rest, retention included, is the next run's. The run then
counts as stopped (or, past its limit, failed: ``monitoring.job_runner``).
"""

from __future__ import annotations

from pathlib import Path

from monitoring.job_run import RunStopped
from monitoring.jobs import JobScheduler
from monitoring.prediction_log import LogSettings, compact, enforce_retention, set_aside_damaged

UPKEEP_INTERVAL_S = 300.0


def log_upkeep(store: Path, settings: LogSettings) -> str:
    """Compaction, then retention; a damaged segment is set aside, not a failed run."""
    compaction = set_aside_damaged(store, lambda: compact(store, settings))
    if compaction.stopped:
        raise RunStopped(f"log upkeep stopped: {compaction}")
    retention = enforce_retention(store, settings)
    return f"compaction: {compaction}; retention: {retention}"


def schedule_log_upkeep(
    scheduler: JobScheduler,
    store: Path,
    settings: LogSettings,
    interval_s: float = UPKEEP_INTERVAL_S,
    timeout_s: float | None = None,
) -> None:
    scheduler.add(
        "log_upkeep",
        interval_s,
        lambda: log_upkeep(store, settings),
        first_delay_s=min(60.0, interval_s),
        timeout_s=timeout_s,
    )

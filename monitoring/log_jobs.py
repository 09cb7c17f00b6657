"""Scheduled upkeep of the prediction log: compaction and retention.

``schedule_log_upkeep`` registers one job on a ``JobScheduler``; the gateway runs it in
process (``driftgate up``), and ``driftgate jobs`` runs it where the gateway does not.
"""

from __future__ import annotations

from pathlib import Path

from monitoring.jobs import JobScheduler
from monitoring.prediction_log import LogSettings, compact, enforce_retention, set_aside_damaged

UPKEEP_INTERVAL_S = 300.0


def log_upkeep(store: Path, settings: LogSettings) -> str:
    """Compaction, then retention; a damaged segment is set aside, not a failed run."""
    compaction = set_aside_damaged(store, lambda: compact(store, settings))
    retention = enforce_retention(store, settings)
    return f"compaction: {compaction}; retention: {retention}"


def schedule_log_upkeep(
    scheduler: JobScheduler,
    store: Path,
    settings: LogSettings,
    interval_s: float = UPKEEP_INTERVAL_S,
) -> None:
    scheduler.add(
        "log_upkeep",
        interval_s,
        lambda: log_upkeep(store, settings),
        first_delay_s=min(60.0, interval_s),
    )

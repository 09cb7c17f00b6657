"""Background upkeep of a store: compaction and retention (the gateway's jobs call these).

Both take ``.staging/maintenance.lock`` (flock), so two gateway replicas sharing a store
never compact the same files twice; the second one returns a report saying it skipped.

Compaction merges the small segments of a partition folder into one (DuckDB reads them
with ``union_by_name`` and writes the merged file to staging, sorted by timestamp). The
swap is not atomic for readers, by design and briefly: the merged file is renamed in
first, then the old files are unlinked, so a query that lists the folder in between (a
few unlink calls, microseconds) counts those rows twice; and a query that listed an old
file just before it was unlinked can fail with "No such file": ``run_sql`` retries such a
query once. A journal in staging makes the swap crash-safe: the next run finishes it.
Run by a job, compaction stops between partitions once the run is asked to stop
(``monitoring.job_run``: the jobs stopping, or the time limit), and the merge under way
has its query interrupted: its staged file is removed and its segments stay as they were,
while a swap that has begun (renames and unlinks, no query) always completes.
Compaction renames no column and changes no column's shape (DuckDB keeps an all-null
column null-typed, and widens the rest within one list depth), so the store's shape
registry (``shape_registry``) stays true; retention leaves the registry alone.

Retention deletes date partitions whose whole day is older than ``max_age_days``, then
the oldest segments (by date, then name) until the store's segments fit ``max_bytes``.
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from datetime import time as clock
from pathlib import Path

import duckdb

from monitoring.job_run import stop_requested, watch_connection
from monitoring.prediction_log.catalog import sql_string
from monitoring.prediction_log.layout import (
    COMPRESSION,
    TABLES,
    Segment,
    fsync_dir,
    fsync_file,
    iter_partitions,
    iter_segments,
    publish,
    remove_stale_staging,
    staging_dir,
    staging_file,
    store_lock,
)
from monitoring.prediction_log.records import LogSettings

#: Segments at least this big are left alone: compaction is for the writer's small files.
COMPACT_MAX_SEGMENT_BYTES = 128 * 2**20
_BUSY = "another compaction or retention run holds the store's maintenance lock"

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class CompactedPartition:
    partition: str  # relative to the store root
    segments: int  # merged into one
    rows: int
    bytes_before: int
    bytes_after: int


@dataclass(frozen=True, slots=True)
class CompactionReport:
    compacted: tuple[CompactedPartition, ...] = ()
    failed: tuple[str, ...] = ()  # "<partition>: <error>"; its segments are untouched
    recovered: int = 0  # interrupted swaps finished first
    skipped: str | None = None  # why nothing was done
    stopped: bool = False  # the job run was asked to stop: partitions were left for later

    @property
    def segments_removed(self) -> int:
        return sum(p.segments for p in self.compacted) - len(self.compacted)

    def __str__(self) -> str:
        if self.skipped:
            return f"compaction skipped: {self.skipped}"
        merged = sum(p.segments for p in self.compacted)
        text = f"compacted {len(self.compacted)} partitions ({merged} segments into "
        text += f"{len(self.compacted)}), {len(self.failed)} failed"
        text += f", {self.recovered} interrupted swaps finished" if self.recovered else ""
        return text + ("; stopped before the other partitions" if self.stopped else "")


@dataclass(frozen=True, slots=True)
class RetentionReport:
    expired_partitions: tuple[str, ...] = ()  # deleted for age, relative to the root
    deleted_segments: int = 0  # for age and for size
    bytes_freed: int = 0
    bytes_remaining: int = 0  # segments left in the store
    skipped: str | None = None

    def __str__(self) -> str:
        if self.skipped:
            return f"retention skipped: {self.skipped}"
        return (
            f"retention deleted {self.deleted_segments} segments "
            f"({len(self.expired_partitions)} expired partitions, {self.bytes_freed} bytes); "
            f"{self.bytes_remaining} bytes remain"
        )


#: Compaction and retention take turns: ``<store>/.staging/maintenance.lock``.
MAINTENANCE_LOCK = "maintenance"


def compact(root: Path, settings: LogSettings) -> CompactionReport:
    """Merge every partition folder holding ``compact_min_files`` small segments or more."""
    root = Path(root).resolve()
    with store_lock(root, MAINTENANCE_LOCK, wait=False) as held:
        if not held:
            return CompactionReport(skipped=_BUSY)
        recovered = _recover(root)
        remove_stale_staging(root)
        compacted: list[CompactedPartition] = []
        failed: list[str] = []
        for folder, small in _partitions_to_merge(root, settings):
            if stop_requested():
                return CompactionReport(tuple(compacted), tuple(failed), recovered, stopped=True)
            try:
                compacted.append(_merge(root, folder, small))
            except (duckdb.Error, OSError) as exc:
                if stop_requested():  # the merge was interrupted: its segments are intact
                    return CompactionReport(
                        tuple(compacted), tuple(failed), recovered, stopped=True
                    )
                failed.append(f"{folder.relative_to(root)}: {exc}")
        return CompactionReport(tuple(compacted), tuple(failed), recovered)


def _partitions_to_merge(root: Path, settings: LogSettings) -> Iterator[tuple[Path, list[Segment]]]:
    """Every partition folder with ``compact_min_files`` small segments or more, and those."""
    for table in TABLES:
        for folder, day in iter_partitions(root, table):
            small = [
                s for s in iter_segments(folder, table, day) if s.size < COMPACT_MAX_SEGMENT_BYTES
            ]
            if len(small) >= settings.compact_min_files:
                yield folder, small


def _merge(root: Path, folder: Path, segments: list[Segment]) -> CompactedPartition:
    staged = staging_file(root, ".parquet.tmp")
    files = ", ".join(sql_string(str(s.path)) for s in segments)
    con = duckdb.connect()
    watch_connection(con)  # interrupted when the job run is asked to stop
    try:
        # hive_partitioning=false: model and date stay in the path, not in the file.
        counted = con.execute(
            f"""COPY (SELECT * FROM read_parquet([{files}], union_by_name = true,
                                                hive_partitioning = false)
                     ORDER BY "timestamp")
                TO {sql_string(str(staged))} (FORMAT parquet, COMPRESSION {COMPRESSION})"""
        ).fetchall()
    except BaseException:
        staged.unlink(missing_ok=True)
        raise
    finally:
        con.close()
    # Keep the oldest piece's timestamp so that retention still sees the data's age.
    final = folder / f"{segments[0].path.name.split('-', 1)[0]}-{uuid.uuid4().hex}.parquet"
    journal = staging_dir(root) / f"compaction-{uuid.uuid4().hex}.json"
    journal.write_text(
        json.dumps(
            {
                "merged": str(final.relative_to(root)),
                "staged": str(staged),
                "replaces": [str(s.path.relative_to(root)) for s in segments],
            }
        )
    )
    fsync_file(journal)
    size = staged.stat().st_size
    publish(staged, final)
    for segment in segments:
        segment.path.unlink(missing_ok=True)
    fsync_dir(folder)
    journal.unlink()
    return CompactedPartition(
        partition=str(folder.relative_to(root)),
        segments=len(segments),
        rows=int(counted[0][0]) if counted else 0,
        bytes_before=sum(s.size for s in segments),
        bytes_after=size,
    )


def _recover(root: Path) -> int:
    """Finish (or undo) swaps that a killed compaction left half done."""
    recovered = 0
    for journal in sorted(staging_dir(root).glob("compaction-*.json")):
        try:
            plan = json.loads(journal.read_text())
            merged, staged, replaces = plan["merged"], plan["staged"], list(plan["replaces"])
        except (ValueError, KeyError, TypeError) as exc:
            # A journal is complete and fsynced before the swap starts: one that cannot be
            # read was being written when the process died, so nothing was swapped yet.
            aside = journal.with_name(journal.name + ".unreadable")
            log.warning(
                "compaction journal %s cannot be read (%s): no swap had started; moved it "
                "to %s and carried on",
                journal,
                exc,
                aside,
            )
            journal.replace(aside)
            continue
        if (root / merged).exists():
            for old in replaces:
                (root / old).unlink(missing_ok=True)
        else:
            Path(staged).unlink(missing_ok=True)
        journal.unlink()
        recovered += 1
    return recovered


def enforce_retention(
    root: Path, settings: LogSettings, now: datetime | None = None
) -> RetentionReport:
    """Delete expired date partitions, then the oldest segments beyond ``max_bytes``."""
    root = Path(root).resolve()
    now = now or datetime.now(UTC)
    cutoff = now - timedelta(days=settings.max_age_days)
    recent = now.date() - timedelta(days=1)  # writers may still be adding folders here
    with store_lock(root, MAINTENANCE_LOCK, wait=False) as held:
        if not held:
            return RetentionReport(skipped=_BUSY)
        expired: list[str] = []
        kept: list[Segment] = []
        deleted = freed = 0
        for table in TABLES:
            for folder, day in iter_partitions(root, table):
                if day is None:
                    continue
                segments = list(iter_segments(folder, table, day))
                if datetime.combine(day + timedelta(days=1), clock(), UTC) > cutoff:
                    kept.extend(segments)
                    continue
                for segment in segments:
                    segment.path.unlink(missing_ok=True)
                    deleted += 1
                    freed += segment.size
                expired.append(str(folder.relative_to(root)))
                _remove_if_empty(folder, root)
        kept.sort(key=lambda s: (s.day or date.min, s.path.name))
        remaining = sum(s.size for s in kept)
        for segment in kept:
            if remaining <= settings.max_bytes:
                break
            segment.path.unlink(missing_ok=True)
            deleted += 1
            freed += segment.size
            remaining -= segment.size
            if segment.day is not None and segment.day < recent:
                _remove_if_empty(segment.path.parent, root)
        return RetentionReport(tuple(expired), deleted, freed, remaining)


def _remove_if_empty(folder: Path, root: Path) -> None:
    """Remove a partition folder, and its model folder, once nothing is left in them."""
    for candidate in (folder, folder.parent):
        if root in (candidate, candidate.parent):
            return  # never a tree's own folder
        try:
            candidate.rmdir()
        except OSError:
            return

"""Where things live in a store, and the one way a file gets there (staged, fsynced, renamed).

    <root>/predictions/model=<m>/date=<YYYY-MM-DD>/<utc-timestamp>-<uuid>.parquet
    <root>/feedback/date=<YYYY-MM-DD>/<utc-timestamp>-<uuid>.parquet
    <root>/drift_results/model=<m>/date=<YYYY-MM-DD>/...   written by the drift jobs
    <root>/explanations/model=<m>/date=<YYYY-MM-DD>/...    written by the explain jobs
    <root>/driftgate.duckdb      catalog: views over the trees
    <root>/column_shapes.json    the shape of every feature column (``shape_registry``)
    <root>/reports/              HTML reports of the jobs (served by the gateway)
    <root>/latest/               the jobs' latest results, read by the gauges
    <root>/alerts/               what the drift webhook's receiver holds as firing
                                 (``drift.alert_state``)
    <root>/.quarantine/          damaged segments set aside (``quarantine``)
    <root>/.staging/             temporary files, outside every glob the views read

Readers glob ``<tree>/.../*.parquet``, so nothing may ever appear there half-written:
every file is written in ``.staging/``, fsynced, and ``os.replace``d into its folder.
Model names are percent-encoded in the path (DuckDB decodes them back).

Each tree also holds a schema-only placeholder segment under the Hive null partition
(``__HIVE_DEFAULT_PARTITION__``) so that the views' globs always match a file (DuckDB
refuses a view over a glob that matches nothing) and the fixed columns keep their types.
Files whose name starts with ``_`` are placeholders: compaction and retention skip them.
"""

from __future__ import annotations

import fcntl
import os
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from urllib.parse import quote

import pyarrow as pa  # type: ignore[import-untyped]
import pyarrow.parquet as pq  # type: ignore[import-untyped]

PREDICTIONS = "predictions"
FEEDBACK = "feedback"
DRIFT_RESULTS = "drift_results"
EXPLANATIONS = "explanations"
TABLES = (PREDICTIONS, FEEDBACK, DRIFT_RESULTS, EXPLANATIONS)
#: The trees partitioned by model and date (feedback is by date only).
BY_MODEL = (PREDICTIONS, DRIFT_RESULTS, EXPLANATIONS)
CATALOG_FILE = "driftgate.duckdb"
SHAPES_FILE = "column_shapes.json"
STAGING = ".staging"
NULL_PARTITION = "__HIVE_DEFAULT_PARTITION__"
PLACEHOLDER_NAME = "_schema.parquet"
#: Compression of every segment: zstd is ~2x smaller than snappy here at a similar speed.
COMPRESSION = "zstd"


def staging_dir(root: Path) -> Path:
    return root / STAGING


def catalog_path(root: Path) -> Path:
    return root / CATALOG_FILE


def shapes_path(root: Path) -> Path:
    return root / SHAPES_FILE


def tree_glob(root: Path, table: str) -> str:
    """The absolute glob a view reads: one folder level per partition key."""
    levels = "*/*" if table in BY_MODEL else "*"
    return f"{root / table}/{levels}/*.parquet"


def partition_dir(root: Path, table: str, model: str | None, day: date | None) -> Path:
    """The folder of one partition; ``None`` values give the Hive null partition."""
    day_part = f"date={day.isoformat() if day else NULL_PARTITION}"
    if table == FEEDBACK:
        return root / FEEDBACK / day_part
    model_part = f"model={quote(model, safe='') if model is not None else NULL_PARTITION}"
    return root / table / model_part / day_part


def segment_name(now: datetime | None = None) -> str:
    """``<utc-timestamp>-<uuid>.parquet``: sorts by write time, unique across writers."""
    stamp = (now or datetime.now(UTC)).strftime("%Y%m%dT%H%M%S.%fZ")
    return f"{stamp}-{uuid.uuid4().hex}.parquet"


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_file(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def staging_file(root: Path, suffix: str) -> Path:
    """A fresh path in the staging folder (created on demand)."""
    folder = staging_dir(root)
    folder.mkdir(parents=True, exist_ok=True)
    return folder / f"{uuid.uuid4().hex}{suffix}"


def publish(staged: Path, final: Path) -> None:
    """Make a fully written staged file appear at ``final`` in one step."""
    fsync_file(staged)
    final.parent.mkdir(parents=True, exist_ok=True)
    os.replace(staged, final)
    fsync_dir(final.parent)


def write_text_file(root: Path, final: Path, text: str) -> None:
    """Write ``text`` (UTF-8) at ``final`` atomically: staged under ``root``, then published."""
    staged = staging_file(root, final.suffix + ".tmp")
    try:
        staged.write_text(text, encoding="utf-8")
        publish(staged, final)
    except BaseException:
        staged.unlink(missing_ok=True)
        raise


def write_segment(root: Path, table: pa.Table, final: Path) -> int:
    """Write ``table`` as a Parquet segment at ``final`` atomically; returns its size."""
    staged = staging_file(root, ".parquet.tmp")
    try:
        pq.write_table(table, staged, compression=COMPRESSION)
        size = staged.stat().st_size
        publish(staged, final)
    except BaseException:
        staged.unlink(missing_ok=True)
        raise
    return size


def ensure_placeholder(root: Path, table: str, schema: pa.Schema) -> None:
    """Write the tree's schema-only placeholder segment unless it is already there with
    every column of ``schema``: one written by an older driftgate is replaced, so that a
    fixed column added since (``subject``) is in the view, NULL in older segments, even
    before a segment that has it is written."""
    final = partition_dir(root, table, None, None) / PLACEHOLDER_NAME
    if final.exists() and not _lacks_columns(final, schema):
        return
    write_segment(root, schema.empty_table(), final)


def _lacks_columns(path: Path, schema: pa.Schema) -> bool:
    try:
        found = set(pq.read_schema(path).names)
    except (OSError, pa.ArrowException):  # damaged: the quarantine deals with it
        return False
    return not set(schema.names) <= found


@dataclass(frozen=True, slots=True)
class Segment:
    """One data segment on disk (placeholders excluded)."""

    path: Path
    table: str
    day: date | None
    size: int


def iter_partitions(root: Path, table: str) -> Iterator[tuple[Path, date | None]]:
    """Every partition folder of a tree with its date (``None``: not a date, e.g. null)."""
    base = root / table
    if not base.is_dir():
        return
    folders = base.glob("*/date=*") if table in BY_MODEL else base.glob("date=*")
    for folder in sorted(folders):
        if folder.is_dir():
            yield folder, _parse_day(folder.name.removeprefix("date="))


def iter_segments(folder: Path, table: str, day: date | None) -> Iterator[Segment]:
    for path in sorted(folder.glob("*.parquet")):
        if path.name.startswith("_"):
            continue
        try:
            size = path.stat().st_size
        except FileNotFoundError:  # removed by a concurrent compaction or retention
            continue
        yield Segment(path, table, day, size)


@contextmanager
def store_lock(root: Path, name: str, *, wait: bool = True) -> Iterator[bool]:
    """Hold the store-wide lock ``<root>/.staging/<name>.lock`` (``flock``): across processes
    and, since each call opens the file anew, across threads too. Yields True once held;
    with ``wait=False`` yields False at once when someone else holds it."""
    folder = staging_dir(root)
    folder.mkdir(parents=True, exist_ok=True)
    fd = os.open(folder / f"{name}.lock", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX if wait else fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        yield True
    finally:
        os.close(fd)  # closing releases the lock


#: How far in the future a staged file's time may be and still be a write under way: a
#: store shared by several nodes sees their clocks, and the file server's (NFS stamps the
#: server's), apart; as far as a file may be in the past, so that no write under way is
#: deleted for a skew that a leftover would not be for its age.
CLOCK_SKEW_S = 3600.0


def remove_stale_staging(
    root: Path, older_than_s: float = 3600, clock_skew_s: float = CLOCK_SKEW_S
) -> int:
    """Delete temporary files a killed process left in staging; returns how many.

    Stale: modified more than ``older_than_s`` ago, or more than ``clock_skew_s`` in the
    future (written under a clock set wrong), which would not grow old for as long."""
    folder = staging_dir(root)
    if not folder.is_dir():
        return 0
    removed = 0
    now = time.time()
    for path in folder.iterdir():
        if path.suffix in (".lock", ".json") or not path.is_file():
            continue
        try:
            modified = path.stat().st_mtime
            if modified < now - older_than_s or modified > now + clock_skew_s:
                path.unlink()
                removed += 1
        except FileNotFoundError:
            continue
    return removed


def _parse_day(text: str) -> date | None:
    try:
        return date.fromisoformat(text)
    except ValueError:
        return None

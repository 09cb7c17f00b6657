"""Damaged segments set aside, so that one bad file does not make the whole store unreadable.

Every view reads its whole tree (``read_parquet`` over a glob), so one truncated, empty or
garbled segment fails every query on ``predictions`` (and the catalog's rebuild, which
binds every view). ``set_aside_damaged`` runs an action on the store; when it fails with an
error about a Parquet file, the segments that are not readable Parquet (the one the error
names, or, when it names none, every damaged one of the store) move to
``<store>/.quarantine/`` under the same relative path, a warning names each, and the action
runs again. Nothing is deleted: an operator can inspect, repair or remove what was set
aside. ``driftgate_log_quarantined_segments`` counts them (``monitoring.prediction_log.metrics``).

A segment that is valid Parquet but disagrees with the others (a column of another type)
is not damage and is not moved: the query's error says what clashes.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

import pyarrow.parquet as pq  # type: ignore[import-untyped]

from monitoring.prediction_log.layout import TABLES

log = logging.getLogger(__name__)
T = TypeVar("T")

QUARANTINE = ".quarantine"
#: How many times one action is retried after setting segments aside.
ATTEMPTS = 5
#: Words of DuckDB's and Arrow's errors about a file that is not readable Parquet.
_PARQUET_DAMAGE = re.compile(
    r"magic bytes|too small to be a Parquet file|TProtocolException|Invalid data|"
    r"Couldn't deserialize thrift|don't know what type|corrupt",
    re.IGNORECASE,
)
_QUOTED_PARQUET = re.compile(r"'([^']+\.parquet)'")


def quarantine_dir(root: Path) -> Path:
    return root / QUARANTINE


def set_aside_damaged(root: Path, action: Callable[[], T]) -> T:
    """``action()``, run again after each failure that damaged segments explain (moved aside
    first); any other failure, or one that persists, is raised as it is."""
    for _ in range(ATTEMPTS):
        try:
            return action()
        except Exception as exc:
            if not set_aside_segments_behind(root, str(exc)):
                raise
    return action()


def set_aside_segments_behind(root: Path, message: str) -> list[Path]:
    """Move aside the damaged segments an error ``message`` points at; what was moved."""
    if not _PARQUET_DAMAGE.search(message):
        return []
    named = [Path(p) for p in _QUOTED_PARQUET.findall(message)]
    named = [path for path in named if _in_tables(root, path)]
    if named:
        return [_move_aside(root, path) for path in named if _damaged(path)]
    # The error names no file (a garbled footer): look at every segment's footer.
    return [_move_aside(root, path) for path in segments(root) if _damaged(path, footer=True)]


def quarantined_count(root: Path) -> int:
    """How many segments were set aside in the store (read at scrape time)."""
    folder = quarantine_dir(root)
    return sum(1 for _ in folder.rglob("*.parquet")) if folder.is_dir() else 0


def segments(root: Path) -> Iterator[Path]:
    """Every Parquet file of the store's tables (placeholders included)."""
    for table in TABLES:
        yield from (root / table).rglob("*.parquet")


def _in_tables(root: Path, path: Path) -> bool:
    try:
        relative = path.resolve().relative_to(root.resolve())
    except ValueError:
        return False
    return bool(relative.parts) and relative.parts[0] in TABLES and path.is_file()


def _damaged(path: Path, *, footer: bool = False) -> bool:
    """Whether ``path`` cannot be read as Parquet: its footer only, or its pages too."""
    try:
        if footer:
            pq.read_metadata(path)
        else:
            pq.ParquetFile(path).read()
    except FileNotFoundError:
        return False  # compacted away meanwhile: nothing to set aside
    except Exception:
        return True
    return False


def _move_aside(root: Path, path: Path) -> Path:
    target = quarantine_dir(root) / path.resolve().relative_to(root.resolve())
    target.parent.mkdir(parents=True, exist_ok=True)
    os.replace(path, target)
    log.warning(
        "prediction log: %s is not readable Parquet; moved it to %s so that the rest of "
        "the store stays readable (inspect it, then delete it)",
        path,
        target,
    )
    return target

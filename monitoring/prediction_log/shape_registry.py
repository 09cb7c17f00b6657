"""The store-wide registry of feature column shapes, shared by every writer process.

Several gateway processes may write one store; each would otherwise learn shapes only from
the segments it found at start and from its own writes, and two of them could introduce
one new column in two shapes, which breaks every query on the view (see ``shapes``). So
the shapes live in the store::

    <root>/column_shapes.json   {"format": 1, "columns": {"in_age": {"depth": 0,
                                  "nulls_only": false}, "in_pixels": {"depth": 2, ...}}}
    <root>/.staging/shapes.lock  taken (flock) by whoever changes it

A writer reads the file once without the lock (it is replaced in one step: staged,
fsynced, renamed). When a table brings a column the writer does not know (or a more
specific shape of one: lists of floats where it saw only lists of nulls), it calls
``agree``: under the lock, re-read the file, place the columns (the first shape
registered for a name keeps it; a later, incompatible one is stored as
``<column>__<shape>`` and registered under that name), write the file back if anything
was learnt. A store written before the registry existed, or whose file is unreadable, gets
one rebuilt from the footers of all its prediction segments, under the lock.

The registry only grows: retention deletes segments, not the shapes of their columns, so a
name keeps its shape even after its last segment expired.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator, Sequence
from datetime import date
from pathlib import Path
from typing import Any

import pyarrow as pa  # type: ignore[import-untyped]
import pyarrow.parquet as pq  # type: ignore[import-untyped]

from monitoring.prediction_log.layout import (
    PREDICTIONS,
    iter_partitions,
    iter_segments,
    shapes_path,
    store_lock,
    write_text_file,
)
from monitoring.prediction_log.shapes import (
    Column,
    Shape,
    compatible,
    describe,
    feature_columns,
    place,
    refine,
)

log = logging.getLogger(__name__)

REGISTRY_FORMAT = 1
#: ``<root>/.staging/shapes.lock``: held while the registry is read, changed and replaced.
LOCK_NAME = "shapes"
#: Listings of one partition folder while a compaction swaps its segments under us.
_LISTING_ATTEMPTS = 3


class ShapeRegistry:
    """``<root>/column_shapes.json``: the one shape each feature column has in the store."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.path = shapes_path(self.root)

    def load(self) -> dict[str, Shape]:
        """The registered shapes, read without the lock; empty when there is no usable
        file yet (the first ``agree`` builds or repairs it)."""
        try:
            return read_shapes(self.path)
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as exc:
            log.debug("prediction log: shape registry not read at start: %s", exc)
            return {}

    def agree(self, columns: Sequence[Column]) -> dict[str, Shape]:
        """Register what ``columns`` teach (first shape wins) and return every shape.

        Raises ``OSError`` when the lock or the file cannot be used.
        """
        with store_lock(self.root, LOCK_NAME):
            shapes = self._read_or_rebuild()
            learnt = place(shapes, columns).learnt
            if learnt:
                shapes.update(learnt)
                self._write(shapes)
            return shapes

    def _read_or_rebuild(self) -> dict[str, Shape]:
        try:
            return read_shapes(self.path)
        except FileNotFoundError:
            log.info("prediction log: building %s from the store's segments", self.path)
        except ValueError as exc:
            log.warning(
                "prediction log: the shape registry is unreadable (%s); rebuilding it from "
                "the store's segments",
                exc,
            )
        shapes = shapes_in_segments(self.root)
        self._write(shapes)
        return shapes

    def _write(self, shapes: dict[str, Shape]) -> None:
        write_text_file(self.root, self.path, format_shapes(shapes))


def format_shapes(shapes: dict[str, Shape]) -> str:
    columns = {
        name: {"depth": depth, "nulls_only": nulls_only}
        for name, (depth, nulls_only) in sorted(shapes.items())
    }
    return json.dumps({"format": REGISTRY_FORMAT, "columns": columns}, indent=1) + "\n"


def read_shapes(path: Path) -> dict[str, Shape]:
    """The shapes of a registry file.

    Raises ``FileNotFoundError`` when it is missing, ``ValueError`` when it is not a
    registry of this format.
    """
    text = path.read_text(encoding="utf-8")  # UnicodeDecodeError is a ValueError
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path} is not JSON: {exc}") from exc
    if not isinstance(data, dict) or data.get("format") != REGISTRY_FORMAT:
        raise ValueError(f"{path} is not a shape registry of format {REGISTRY_FORMAT}")
    columns = data.get("columns")
    if not isinstance(columns, dict):
        raise ValueError(f"{path} has no columns object")
    return {name: _parse_shape(path, name, entry) for name, entry in columns.items()}


def _parse_shape(path: Path, name: str, entry: Any) -> Shape:
    depth = entry.get("depth") if isinstance(entry, dict) else None
    nulls_only = entry.get("nulls_only") if isinstance(entry, dict) else None
    if type(depth) is not int or depth < 0 or not isinstance(nulls_only, bool):
        raise ValueError(f"{path}: {name!r} is not a shape: {entry!r}")
    return depth, nulls_only


def shapes_in_segments(root: Path) -> dict[str, Shape]:
    """The shapes of the feature columns of every prediction segment (footers only).

    A name found in incompatible shapes (segments written by several writers before the
    registry existed) keeps the first, in path order, and is reported: queries reading
    it fail until the segments with the other shape are removed.
    """
    shapes: dict[str, Shape] = {}
    clashes: set[str] = set()
    for folder, day in iter_partitions(root, PREDICTIONS):
        for path, schema in _segment_schemas(folder, day):
            for name, shape in feature_columns(schema):
                known = shapes.get(name)
                if known is None:
                    shapes[name] = shape
                elif compatible(known, shape):
                    shapes[name] = refine(known, shape)
                elif name not in clashes:
                    clashes.add(name)
                    log.warning(
                        "prediction log: %s is a %s in %s but a %s in earlier segments; "
                        "queries reading it fail until one of them is removed",
                        name,
                        describe(shape),
                        path,
                        describe(known),
                    )
    return shapes


def _segment_schemas(folder: Path, day: date | None) -> Iterator[tuple[Path, pa.Schema]]:
    """The schema of each segment of a partition folder. A segment that disappears while
    we read (a compaction merged it) makes us list the folder again for the merged one."""
    seen: set[str] = set()
    for _ in range(_LISTING_ATTEMPTS):
        vanished = False
        for segment in iter_segments(folder, PREDICTIONS, day):
            if segment.path.name in seen:
                continue
            try:
                schema = pq.read_schema(segment.path)
            except FileNotFoundError:
                vanished = True
                continue
            except (OSError, pa.ArrowException) as exc:
                log.warning("prediction log: cannot read the schema of %s: %s", segment.path, exc)
                schema = None
            seen.add(segment.path.name)
            if schema is not None:
                yield segment.path, schema
        if not vanished:
            return

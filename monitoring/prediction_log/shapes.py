"""Keep one shape per feature column across the store, so that no segment breaks the views.

The views read every segment with ``union_by_name``: DuckDB widens scalar types (int and
float give DOUBLE, anything and text give VARCHAR) and the element types of lists of the
same depth, but a column that is a scalar in one file and a list in another (or lists of
different depths) fails every query on the view. Feature names collide across models
("input", "x") and a bad request can send ``"age": [30]``, so the writer must not let that
happen: ``ColumnShapes`` remembers the shape of every ``in_``/``out_`` column of the store
(loaded from existing segments at start, then kept as it writes) and renames a column
whose shape conflicts to ``<column>__<shape>`` (``in_age__list``, ``in_x__scalar``). The
first shape keeps the plain name; a conflicting shape costs a second column, not a view.
Dicts are stored as JSON text by ``segments``, so shapes are only scalars and lists.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from pathlib import Path

import pyarrow as pa  # type: ignore[import-untyped]
import pyarrow.parquet as pq  # type: ignore[import-untyped]

from monitoring.prediction_log.layout import PREDICTIONS, iter_partitions, iter_segments

log = logging.getLogger(__name__)

#: (list depth, whether the innermost values are all null: then any depth >= it fits).
Shape = tuple[int, bool]
_FEATURE_PREFIXES = ("in_", "out_")


def shape_of(data_type: pa.DataType) -> Shape:
    depth = 0
    while pa.types.is_list(data_type) or pa.types.is_large_list(data_type):
        depth += 1
        data_type = data_type.value_type
    return depth, pa.types.is_null(data_type)


def compatible(a: Shape, b: Shape) -> bool:
    """Whether DuckDB can read columns of both shapes as one."""
    (depth_a, open_a), (depth_b, open_b) = a, b
    if depth_a == depth_b:
        return True
    return (open_a and depth_a < depth_b) or (open_b and depth_b < depth_a)


def _suffix(shape: Shape) -> str:
    depth = shape[0]
    return "scalar" if depth == 0 else "list" if depth == 1 else f"list{depth}"


class ColumnShapes:
    """The shape each feature column has in the store; renames conflicting columns."""

    def __init__(self) -> None:
        self._shapes: dict[str, Shape] = {}

    def observe(self, schema: pa.Schema) -> None:
        for field in schema:
            if field.name.startswith(_FEATURE_PREFIXES):
                self._learn(field.name, shape_of(field.type))

    def conform(self, table: pa.Table) -> pa.Table:
        """``table`` with every conflicting feature column renamed (and learnt)."""
        names = []
        for field in table.schema:
            name = field.name
            if name.startswith(_FEATURE_PREFIXES):
                shape = shape_of(field.type)
                known = self._shapes.get(name)
                if known is not None and not compatible(known, shape):
                    name = f"{name}__{_suffix(shape)}"
                    log.warning(
                        "prediction log: %s has shape %s here but %s in the store; stored as %s",
                        field.name,
                        _suffix(shape),
                        _suffix(known),
                        name,
                    )
                self._learn(name, shape)
            names.append(name)
        return table.rename_columns(names) if names != table.schema.names else table

    def _learn(self, name: str, shape: Shape) -> None:
        known = self._shapes.get(name)
        # Keep the most specific shape: a list of nulls says less than a list of floats.
        if known is None or (known[1] and not shape[1]) or shape[0] > known[0]:
            self._shapes[name] = shape


def load_shapes(root: Path) -> ColumnShapes:
    """The shapes in the newest segment of each model partition (footers only: cheap)."""
    shapes = ColumnShapes()
    for path in _newest_segments(root):
        try:
            shapes.observe(pq.read_schema(path))
        except (OSError, pa.ArrowException) as exc:  # removed meanwhile, or unreadable
            log.warning("prediction log: cannot read the schema of %s: %s", path, exc)
    return shapes


def _newest_segments(root: Path) -> Iterable[Path]:
    newest: dict[Path, Path] = {}
    for folder, day in iter_partitions(root, PREDICTIONS):
        for segment in iter_segments(folder, PREDICTIONS, day):
            model_folder = folder.parent
            if model_folder not in newest or segment.path.name > newest[model_folder].name:
                newest[model_folder] = segment.path
    return newest.values()

"""Keep one shape per feature column across the store, so that no segment breaks the views.

The views read every segment with ``union_by_name``: DuckDB widens scalar types (int and
float give DOUBLE, anything and text give VARCHAR) and the element types of lists of the
same depth, but a column that is a scalar in one file and a list in another (or lists of
different depths) fails every query on the view. Feature names collide across models
("input", "x") and a bad request can send ``"age": [30]``, so the writer must not let that
happen: ``ColumnShapes`` knows the shape of every ``in_``/``out_`` column of the store and
renames a column whose shape conflicts to ``<column>__<shape>`` (``in_age__list``,
``in_x__scalar``). The first shape keeps the plain name; a conflicting shape costs a second
column, not a view. Dicts are stored as JSON text by ``segments``, so shapes are only
scalars and lists.

Several writer processes may share a store, so the shapes are agreed store-wide through
a ``ShapeAgreement`` (``shape_registry.ShapeRegistry``, a file in the store). A writer asks
it only when a table holds a column it does not know, or a more specific shape of one
(a list of floats where it had seen only lists of nulls); every other flush decides
alone, with this module's pure functions, and takes no lock.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

import pyarrow as pa  # type: ignore[import-untyped]

log = logging.getLogger(__name__)

#: (list depth, whether the innermost values are all null: then any depth >= it fits).
Shape = tuple[int, bool]
#: A feature column of a table: (name, shape).
Column = tuple[str, Shape]
FEATURE_PREFIXES = ("in_", "out_")


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


def refine(known: Shape, shape: Shape) -> Shape:
    """The more specific of two compatible shapes: a list of nulls says less than a list
    of floats, and a null less than a list."""
    if (known[1] and not shape[1]) or shape[0] > known[0]:
        return shape
    return known


def describe(shape: Shape) -> str:
    """``scalar``, ``list``, ``list2``...: also the suffix of a renamed column."""
    depth = shape[0]
    return "scalar" if depth == 0 else "list" if depth == 1 else f"list{depth}"


def feature_columns(schema: pa.Schema) -> list[Column]:
    """The ``in_``/``out_`` columns of a schema with their shapes, in order."""
    return [
        (field.name, shape_of(field.type))
        for field in schema
        if field.name.startswith(FEATURE_PREFIXES)
    ]


@dataclass(frozen=True, slots=True)
class Rename:
    """A column stored under another name because the store has it in another shape."""

    column: str
    shape: Shape  # in this table
    store_shape: Shape  # what the plain name holds in the store
    name: str  # stored as


@dataclass(frozen=True, slots=True)
class Placement:
    """Where the feature columns of one table go, given the shapes the store knows."""

    names: tuple[str, ...]  # one per column, in order
    learnt: dict[str, Shape]  # columns new to the store, or now more specific
    renames: tuple[Rename, ...]


def place(known: Mapping[str, Shape], columns: Sequence[Column]) -> Placement:
    """The name each column is stored under: its own unless the store holds another,
    incompatible shape there (then ``<name>__<shape>``, and so on); pure."""
    learnt: dict[str, Shape] = {}
    names: list[str] = []
    renames: list[Rename] = []
    for column, shape in columns:
        name = column
        while True:
            current = learnt.get(name, known.get(name))
            # A name already given to an earlier column of this table is taken as well.
            if current is None or (compatible(current, shape) and name not in names):
                break
            name = f"{name}__{describe(shape)}"
        if name != column:
            store_shape = learnt.get(column, known.get(column))
            assert store_shape is not None
            renames.append(Rename(column, shape, store_shape, name))
        new = shape if current is None else refine(current, shape)
        if new != current:
            learnt[name] = new
        names.append(name)
    return Placement(tuple(names), learnt, tuple(renames))


class ShapeAgreement(Protocol):
    """Where writers agree on shapes (``shape_registry.ShapeRegistry``)."""

    def agree(self, columns: Sequence[Column]) -> dict[str, Shape]:
        """Place ``columns`` against the store-wide shapes, record what they teach, and
        return every shape the store now knows."""
        ...


class ColumnShapes:
    """The shape each feature column has in the store; renames conflicting columns.

    ``known`` is what the writer read at start; ``agreement`` is asked, under its lock,
    only about columns new to this writer (or newly specific). Without one (tests, or a
    store whose registry cannot be used) the shapes are this writer's alone.
    """

    def __init__(
        self, agreement: ShapeAgreement | None = None, known: Mapping[str, Shape] | None = None
    ) -> None:
        self._agreement = agreement
        self._shapes: dict[str, Shape] = dict(known or {})

    def conform(self, table: pa.Table) -> pa.Table:
        """``table`` with every conflicting feature column renamed (and its shapes learnt)."""
        columns = feature_columns(table.schema)
        placement = place(self._shapes, columns)
        adopted: set[str] = set()  # registered by another writer since we last looked
        if placement.learnt and self._agreement is not None:
            try:
                agreed = self._agreement.agree(columns)
            except OSError as exc:
                log.warning(
                    "prediction log: column shapes not agreed with other writers (%s); "
                    "this writer decides alone for %s",
                    exc,
                    ", ".join(sorted(placement.learnt)),
                )
            else:
                adopted = agreed.keys() - self._shapes.keys()
                self._shapes = agreed
                placement = place(self._shapes, columns)
        self._shapes.update(placement.learnt)
        for rename in placement.renames:
            _warn(rename, by_another_writer=rename.column in adopted)
        if not placement.renames:
            return table
        renamed = dict(zip((name for name, _ in columns), placement.names, strict=True))
        return table.rename_columns([renamed.get(name, name) for name in table.schema.names])


def _warn(rename: Rename, *, by_another_writer: bool) -> None:
    source = "registered by another writer" if by_another_writer else "in the store"
    log.warning(
        "prediction log: %s has shape %s here but %s %s; stored as %s",
        rename.column,
        describe(rename.shape),
        describe(rename.store_shape),
        source,
        rename.name,
    )

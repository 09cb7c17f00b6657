"""One feature's values summarised as counts over fixed bins: what every drift test compares.

A reference profile stores one ``Distribution`` per feature; a window of the log is scanned
into another over the *same* bins (SQL in DuckDB, see ``drift.window``), and the tests in
``drift.stats`` compare the two. Nothing here touches a file or a database: the builders
below turn numpy arrays into distributions, for profiles built from a training set and for
tests.

Bins:

- numeric: interior boundaries ``edges`` e_1 < ... < e_k give k + 1 bins
  ``(-inf, e_1], (e_1, e_2], ..., (e_k, +inf)``: DuckDB's ``histogram(x, [e_1..e_k])``
  and ``np.searchsorted(edges, x, side="left")`` agree on them. NULL, NaN and the
  infinities are counted in ``missing``, outside the bins: an infinity is no place on the
  axis that a bin, a mean or a standard deviation can use, and the prediction log holds
  none (a logged infinity is NULL). The reference also carries ``low``/``high`` (its
  minimum and maximum: the outer bins' extent) and ``scale`` (its standard deviation).
  The edges are the reference's quantiles, ties merged; a constant reference c gets
  the edges (the number just below c, c), so that values below c have a bin of their own.
- categorical: ``categories`` are the reference's most frequent values as text, the last
  one ``OTHER`` collecting everything else (values the reference never had included).
  NULL is counted in ``missing``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

Kind = Literal["numeric", "categorical"]

#: The catch-all category: values outside the reference's top categories.
OTHER = "__other__"
#: Numeric bins per feature (quantile edges of the reference; ties merge bins).
DEFAULT_BINS = 20
#: Categories kept per feature before the rest go to ``OTHER``.
MAX_CATEGORIES = 50


@dataclass(frozen=True)
class Distribution:
    """Counts of one feature over fixed bins; ``counts`` is int64, one per bin."""

    kind: Kind
    counts: np.ndarray
    missing: int = 0
    edges: tuple[float, ...] = ()
    categories: tuple[str, ...] = ()
    low: float | None = None
    high: float | None = None
    scale: float | None = None
    mean: float | None = None
    quantiles: Mapping[str, float] = field(default_factory=dict)

    @property
    def total(self) -> int:
        """Values counted in the bins (missing excluded)."""
        return int(self.counts.sum())

    @property
    def rows(self) -> int:
        return self.total + self.missing

    def with_counts(self, counts: np.ndarray, missing: int) -> Distribution:
        """The same bins with other counts (what a window scan or a resample gives)."""
        return Distribution(
            kind=self.kind,
            counts=np.asarray(counts, dtype=np.int64),
            missing=int(missing),
            edges=self.edges,
            categories=self.categories,
        )

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "kind": self.kind,
            "counts": [int(c) for c in self.counts],
            "missing": self.missing,
        }
        if self.kind == "numeric":
            data["edges"] = list(self.edges)
            for key in ("low", "high", "scale", "mean"):
                data[key] = getattr(self, key)
            data["quantiles"] = dict(self.quantiles)
        else:
            data["categories"] = list(self.categories)
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Distribution:
        return cls(
            kind=data["kind"],
            counts=np.asarray(data["counts"], dtype=np.int64),
            missing=int(data.get("missing", 0)),
            edges=tuple(float(e) for e in data.get("edges", ())),
            categories=tuple(str(c) for c in data.get("categories", ())),
            low=data.get("low"),
            high=data.get("high"),
            scale=data.get("scale"),
            mean=data.get("mean"),
            quantiles=dict(data.get("quantiles", {})),
        )


QUANTILES = (0.01, 0.05, 0.25, 0.5, 0.75, 0.95, 0.99)


def numeric_reference(values: np.ndarray, bins: int = DEFAULT_BINS) -> Distribution:
    """The reference distribution of a numeric column (NaN and infinities are missing):
    quantile edges."""
    array = np.asarray(values, dtype=np.float64)
    present = array[np.isfinite(array)]
    if present.size == 0:
        raise ValueError("a numeric reference needs at least one finite value")
    probs = np.linspace(0, 1, bins + 1)[1:-1]
    edges = np.unique(np.quantile(present, probs))
    if present.min() == present.max():
        # A constant c: its one edge made the bins (-inf, c] and (c, +inf), where a window
        # of smaller values looked like the reference. Bins below, at and above c instead.
        edges = np.array([np.nextafter(edges[0], -np.inf), edges[0]])
    counts = numeric_counts(present, tuple(float(e) for e in edges))
    return Distribution(
        kind="numeric",
        counts=counts,
        missing=int(array.size - present.size),
        edges=tuple(float(e) for e in edges),
        low=float(present.min()),
        high=float(present.max()),
        scale=float(present.std()),
        mean=float(present.mean()),
        quantiles={
            str(q): float(v)
            for q, v in zip(QUANTILES, np.quantile(present, QUANTILES), strict=True)
        },
    )


def numeric_counts(values: np.ndarray, edges: Sequence[float]) -> np.ndarray:
    """Counts of the finite ``values`` in the bins of ``edges`` (see module doc)."""
    array = np.asarray(values, dtype=np.float64)
    present = array[np.isfinite(array)]
    index = np.searchsorted(np.asarray(edges, dtype=np.float64), present, side="left")
    return np.bincount(index, minlength=len(edges) + 1).astype(np.int64)


def categorical_reference(
    values: Sequence[Any] | np.ndarray, max_categories: int = MAX_CATEGORIES
) -> Distribution:
    """The reference distribution of a categorical column (None is missing)."""
    texts = [category_text(v) for v in values]
    present = [t for t in texts if t is not None]
    if not present:
        raise ValueError("a categorical reference needs at least one value that is not missing")
    names, counts = np.unique(np.asarray(present, dtype=object), return_counts=True)
    order = np.lexsort((names.astype(str), -counts))  # most frequent first, then by name
    kept = tuple(str(names[i]) for i in order[:max_categories])
    categories = (*kept, OTHER)
    return Distribution(
        kind="categorical",
        counts=categorical_counts(present, categories),
        missing=len(texts) - len(present),
        categories=categories,
    )


def categorical_counts(values: Sequence[Any] | np.ndarray, categories: Sequence[str]) -> np.ndarray:
    """Counts per category of the non-missing ``values``; unknown values go to ``OTHER``."""
    position = {name: i for i, name in enumerate(categories)}
    other = position[OTHER]
    counts = np.zeros(len(categories), dtype=np.int64)
    for value in values:
        text = category_text(value)
        if text is not None:
            counts[position.get(text, other)] += 1
    return counts


def counts_from_map(found: Mapping[Any, int], categories: Sequence[str]) -> np.ndarray:
    """Category counts from a value -> count mapping (DuckDB's ``histogram(x)``)."""
    position = {name: i for i, name in enumerate(categories)}
    other = position[OTHER]
    counts = np.zeros(len(categories), dtype=np.int64)
    for value, count in found.items():
        text = category_text(value)
        if text is not None:
            counts[position.get(text, other)] += int(count)
    return counts


def category_text(value: Any) -> str | None:
    """How a categorical value is compared: as text; None, NaN and the infinities are
    missing (the gateway logs an infinity as NULL)."""
    if value is None:
        return None
    if isinstance(value, bool | np.bool_):
        return "true" if value else "false"
    if isinstance(value, float | np.floating):  # float32 columns give numpy scalars
        if not np.isfinite(value):
            return None
        if value.is_integer():
            return str(int(value))
    if isinstance(value, np.integer):
        return str(int(value))
    return str(value)

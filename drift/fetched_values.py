"""What DuckDB hands back from the log, made into what the drift statistics take.

Pure numpy, no connection: ``unmask`` makes a NULL-masked column plain, ``as_float`` reads
numbers, ``histogram_numeric_counts`` and ``histogram_category_counts`` read the
``histogram`` aggregates of a window scan back as counts over a profile's bins (how the
values were counted: ``drift.window``), and ``row_errors`` measures labelled rows against
their predictions. ``drift.window``, ``drift.profile`` and ``explain.traffic`` read their
query results through these.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, Literal

import numpy as np

from drift.distributions import OTHER, category_text

#: How a model's errors are measured against the labels (see ``row_errors``).
Metric = Literal["error_rate", "mean_absolute_error"]


def row_errors(
    metric: Metric,
    predictions: np.ndarray,
    labels: np.ndarray,
) -> np.ndarray:
    """The error of every row that has a label: 0/1 (the texts differ) for
    ``error_rate``, the absolute difference for ``mean_absolute_error``, where a row
    whose prediction or label is missing or infinite has none (the log holds an infinite
    prediction as NULL, so a reference keeps such rows out the same way)."""
    predictions, labels = unmask(predictions), unmask(labels)
    if metric == "mean_absolute_error":
        difference = np.abs(as_float(predictions) - as_float(labels))
        return np.asarray(difference[np.isfinite(difference)], dtype=np.float64)
    pairs = zip(predictions, labels, strict=True)
    texts = [(category_text(p), category_text(y)) for p, y in pairs]
    return np.asarray([float(p != y) for p, y in texts if y is not None], dtype=np.float64)


def unmask(values: Any) -> np.ndarray:
    """Values as a plain array; DuckDB's NULLs (a masked array's mask) become NaN in
    numbers and None otherwise."""
    array: np.ndarray = np.asanyarray(values)
    if not isinstance(array, np.ma.MaskedArray):
        return array
    if not np.ma.is_masked(array):
        return np.asarray(array.data)
    if array.dtype.kind in "fiu":
        return np.asarray(np.ma.filled(array.astype(np.float64), np.nan))
    plain = np.asarray(array.data, dtype=object).copy()
    plain[np.ma.getmaskarray(array)] = None
    return plain


def histogram_numeric_counts(
    found: Mapping[float, int] | None, edges: tuple[float, ...]
) -> np.ndarray:
    """The counts over the bins of ``edges`` (overflow last) of a ``histogram(x, [edges])``."""
    counts = np.zeros(len(edges) + 1, dtype=np.int64)
    if not found:
        return counts
    # A key is its bin's upper edge, found at the bin's position (+inf: after them all).
    index = np.searchsorted(np.asarray(edges), np.asarray(list(found), dtype=np.float64))
    np.add.at(counts, index, np.asarray(list(found.values()), dtype=np.int64))
    return counts


def histogram_category_counts(
    found: Mapping[str, int] | None, categories: tuple[str, ...]
) -> tuple[np.ndarray, int]:
    """The counts per category, and how many keys read back as NaN (missing).

    Keys are the column's values as text. A key that is no category but a number written
    another way is read back as that number (``category_text``): ``3.0`` is the category
    ``3``. DuckDB writes a floating-point column's ``3`` as ``3.0``, and a column that
    holds text in any segment of the store is text in the view, numbers included.
    """
    counts = np.zeros(len(categories), dtype=np.int64)
    if not found:
        return counts, 0
    position = {name: i for i, name in enumerate(categories)}
    other = position[OTHER]
    nan = 0
    for key, count in found.items():
        text = category_text(key)
        if text is not None and text not in position:
            text = _as_number_text(text)
        if text is None:
            nan += int(count)
        else:
            counts[position.get(text, other)] += int(count)
    return counts, nan


def _as_number_text(text: str) -> str | None:
    """``text`` as ``category_text`` writes the number it spells, or unchanged."""
    try:
        number = float(text)
    except ValueError:
        return text
    return category_text(number)


def as_float(values: np.ndarray) -> np.ndarray:
    """Numbers as float64; missing and text that is no number: NaN."""
    if values.dtype.kind in "fiub":
        return values.astype(np.float64)
    return np.asarray([_number_or_nan(value) for value in values], dtype=np.float64)


def _number_or_nan(value: Any) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan

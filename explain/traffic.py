"""One model version's traffic for the explain job: its window of the log, read in one query
(with feedback labels) and sampled, and the background Kernel SHAP compares it with.

The features are the reference profile's inputs (``in_<feature>``), or, for a version
without a profile, every ``in_`` column the window has values in; the background is drawn
from the profile (``drift.sampling``), or is the version's first logged rows.

The numeric labels are sampled with the rows; a few stray ones that are not whole numbers
among whole ones are left out (``explain.labels``).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta

import duckdb
import numpy as np

from drift.distributions import category_text
from drift.fetched_values import as_float, unmask
from drift.profile import ReferenceProfile
from drift.sampling import sample_inputs
from drift.window import is_nested_type, quote_identifier, view_columns
from explain.frame import Frame, take
from explain.labels import LabelKinds, label_kinds
from explain.settings import ExplainJobSettings
from monitoring.prediction_log.catalog import sql_string

#: Rows read from a time window at most (the newest): the sample needs far fewer.
MAX_WINDOW_ROWS = 100_000
_NUMBER_TYPES = ("DOUBLE", "FLOAT", "REAL", "TINYINT", "SMALLINT", "INTEGER", "BIGINT", "HUGEINT")


@dataclass(frozen=True)
class Traffic:
    """The sampled rows of one model version's window, and what they are compared with."""

    model: str
    version: str
    rows: Frame
    labels: np.ndarray | None
    window_rows: int
    labelled_rows: int
    reference: tuple[str, ReferenceProfile] | None
    background: Frame  # Kernel SHAP's
    label_kinds: LabelKinds = field(default_factory=LabelKinds)


def read_traffic(
    con: duckdb.DuckDBPyConnection,
    settings: ExplainJobSettings,
    reference: tuple[str, ReferenceProfile] | None,
    model: str,
    version: str,
    *,
    now: datetime,
) -> Traffic | str:
    """The version's sampled traffic, or why there is none to explain."""
    available = view_columns(con, "predictions_labeled")
    if reference is not None:
        features = [
            (f.name, f.column, f.distribution.kind == "numeric")
            for f in reference[1].features
            if f.role == "input"
        ]
    else:
        features = [
            (column.removeprefix("in_"), column, _is_number_type(duckdb_type))
            for column, duckdb_type in available.items()
            if column.startswith("in_") and not is_nested_type(duckdb_type)
        ]
    if not features:
        return "no input features"
    selected = [
        quote_identifier(column)
        if column in available and not is_nested_type(available[column])
        else "NULL"
        for _, column, _ in features
    ]
    columns = ", ".join(f"{value} AS c{i}" for i, value in enumerate(selected))
    group = f"model = {sql_string(model)} AND version = {sql_string(version)} AND status < 400"
    if settings.window.rows is not None:
        start = now - timedelta(seconds=settings.lookback_s)
        limit = settings.window.rows
    else:
        start = now - timedelta(seconds=settings.window.last_s or 0.0)
        limit = MAX_WINDOW_ROWS
    query = f"""SELECT {columns}, label FROM predictions_labeled
WHERE {group} AND "date" BETWEEN {_date(start)} AND {_date(now)}
AND "timestamp" > {_timestamp(start)} AND "timestamp" <= {_timestamp(now)}
ORDER BY "timestamp" DESC, request_id, "row" LIMIT {int(limit)}"""
    window = _frame(con.execute(query).fetchnumpy(), features)
    if reference is None:  # the view has every model's columns: keep this one's
        window = replace(window, features=_with_values(window.features))
    if not window.features:
        return "no input values"
    if window.rows < settings.min_rows:
        return f"{window.rows} rows in the window, fewer than {settings.min_rows}"
    if reference is not None:
        background = sample_inputs(reference[1], settings.background_rows, seed=0)
    else:
        first = f"""SELECT {columns}, NULL AS label FROM predictions WHERE {group}
ORDER BY "timestamp", request_id, "row" LIMIT {int(settings.background_rows)}"""
        background = _frame(con.execute(first).fetchnumpy(), features).features
        background = {name: background[name] for name in window.features}
    kinds = label_kinds(window.labels)
    rows, labels = _sample(window, settings.rows, settings.min_rows, kinds)
    return Traffic(
        model=model,
        version=version,
        rows=rows,
        labels=labels,
        window_rows=window.rows,
        labelled_rows=window.labelled,
        reference=reference,
        background=background,
        label_kinds=kinds,
    )


@dataclass(frozen=True)
class _Window:
    features: Frame
    labels: np.ndarray  # float64, NaN where a row has no usable (numeric) label
    rows: int
    labelled: int


def _frame(fetched: dict[str, np.ndarray], features: list[tuple[str, str, bool]]) -> _Window:
    """Fetched columns ``c0..`` as a frame; a profile-less column with no value is dropped."""
    frame: Frame = {}
    for i, (name, _, numeric) in enumerate(features):
        values = unmask(fetched[f"c{i}"])
        if numeric:
            frame[name] = as_float(values)
        else:
            frame[name] = np.asarray([category_text(v) for v in values], dtype=object)
    raw_labels = unmask(fetched["label"])
    present = np.asarray([category_text(v) is not None for v in raw_labels], dtype=bool)
    labels = as_float(raw_labels) if len(raw_labels) else np.zeros(0)
    return _Window(frame, labels, len(raw_labels), int(present.sum()))


def _with_values(frame: Frame) -> Frame:
    """The features that have at least one value (not NaN, not None)."""
    return {
        name: column
        for name, column in frame.items()
        if (
            np.isfinite(column).any()
            if column.dtype.kind == "f"
            else any(v is not None for v in column)
        )
    }


def _is_number_type(duckdb_type: str) -> bool:
    return duckdb_type.removeprefix("U") in _NUMBER_TYPES or duckdb_type.startswith("DECIMAL")


def _sample(
    window: _Window, size: int, min_rows: int, kinds: LabelKinds
) -> tuple[Frame, np.ndarray | None]:
    """``size`` rows (fixed seed), from the labelled ones when ``min_rows`` have a usable
    number (stray non-integer labels left out, as ``kinds`` says)."""
    usable = np.isfinite(window.labels)
    if kinds.left_out:
        usable &= window.labels == np.round(window.labels)
    numeric = np.flatnonzero(usable)
    pool = numeric if len(numeric) >= min_rows else np.arange(window.rows)
    chosen = np.sort(np.random.default_rng(0).choice(pool, min(size, len(pool)), replace=False))
    labels = window.labels[chosen] if len(numeric) >= min_rows else None
    # The window's labels decide, not the sample's: a sample of a regression's labels that
    # happen to be whole would score this run by accuracy and the next by error.
    if labels is not None and (kinds.non_integer == 0 or kinds.left_out):
        return take(window.features, chosen), labels.astype(np.int64)
    return take(window.features, chosen), labels


def _timestamp(moment: datetime) -> str:
    return f"TIMESTAMPTZ '{moment.astimezone(UTC).strftime('%Y-%m-%d %H:%M:%S.%f')}+00'"


def _date(moment: datetime) -> str:
    return f"DATE '{moment.astimezone(UTC).date().isoformat()}'"

"""The reference profile of a model version: what its traffic is compared with.

A profile is built once, from the training data (``profile_from_file``: CSV or Parquet,
the way ``driftgate reference build`` does it) or from the first rows the version served
(``drift.log_profile``), and saved beside the model (``drift.references``). Every drift run
then scans a window of the log over the profile's bins (``drift.window``) and tests it
against the profile's distributions (``drift.stats``), its PCA detector
(``drift.multivariate``) and its performance reference (error rate or mean absolute
error of the prediction against the label).

Columns are named as in the store: ``in_<feature>`` for inputs, ``out_<output>`` for
outputs. Which test a column gets follows its kind, inferred from the values
(``infer_kind``): numbers with more than ``CATEGORICAL_MAX_DISTINCT`` distinct values are
numeric; text, booleans and numbers with fewer distinct values are categorical. Columns
holding lists (tensor rows) and columns with no value at all are not profiled.

Infinities in a numeric column (``inf`` in a CSV, a float overflow upstream) count as
missing values, as NaN does: no bin, mean or standard deviation can hold them, and the
window they are compared with counts them as missing too (``drift.window``; the gateway
logs them as NULL). Building the profile warns, naming the column and how many, since a
training set with infinities is usually a bug worth knowing about.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import duckdb
import numpy as np

from drift.distributions import (
    DEFAULT_BINS,
    OTHER,
    Distribution,
    Kind,
    categorical_reference,
    category_text,
    numeric_reference,
)
from drift.fetched_values import Metric, as_float, row_errors, unmask
from drift.multivariate import MIN_ROWS, PcaDetector, fit_pca_detector
from drift.window import quote_identifier
from monitoring.prediction_log.catalog import sql_string

log = logging.getLogger("driftgate.drift")

FORMAT = 1
#: Numbers with at most this many distinct values are treated as categories.
CATEGORICAL_MAX_DISTINCT = 10
_ROLES: dict[str, Literal["input", "output"]] = {"in_": "input", "out_": "output"}


@dataclass(frozen=True)
class FeatureProfile:
    """One profiled column: ``name`` is the feature ("fare"), ``column`` the store's
    column ("in_fare")."""

    name: str
    column: str
    role: Literal["input", "output"]
    distribution: Distribution


@dataclass(frozen=True)
class PerformanceReference:
    """How wrong the model was on the labelled reference rows.

    ``metric``: ``error_rate`` (prediction text differs from the label text; for
    categorical predictions) or ``mean_absolute_error``. ``mean``/``std`` are over the
    ``n`` per-row errors (0/1 or absolute differences).
    """

    metric: Metric
    prediction: str
    n: int
    mean: float
    std: float


@dataclass(frozen=True)
class ReferenceProfile:
    """Everything a drift run compares a window with, for one model version."""

    model: str
    version: str
    created: datetime
    source: str
    rows: int
    features: tuple[FeatureProfile, ...]
    multivariate: PcaDetector | None
    performance: PerformanceReference | None

    def feature(self, column: str) -> FeatureProfile:
        for feature in self.features:
            if feature.column == column:
                return feature
        known = ", ".join(f.column for f in self.features)
        raise KeyError(f"{column} is not in the profile of {self.model} v{self.version}: {known}")

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "model": self.model,
            "version": self.version,
            "created": self.created.isoformat(),
            "source": self.source,
            "rows": self.rows,
            "features": [
                {
                    "name": f.name,
                    "column": f.column,
                    "role": f.role,
                    "distribution": f.distribution.to_dict(),
                }
                for f in self.features
            ],
            "multivariate": None if self.multivariate is None else self.multivariate.to_dict(),
            "performance": None if self.performance is None else asdict(self.performance),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ReferenceProfile:
        if data.get("format") != FORMAT:
            raise ValueError(
                f"reference profile format {data.get('format')!r} is not supported "
                f"(this driftgate reads format {FORMAT}): rebuild the profile"
            )
        performance = data.get("performance")
        multivariate = data.get("multivariate")
        return cls(
            model=str(data["model"]),
            version=str(data["version"]),
            created=datetime.fromisoformat(data["created"]),
            source=str(data["source"]),
            rows=int(data["rows"]),
            features=tuple(
                FeatureProfile(
                    name=str(f["name"]),
                    column=str(f["column"]),
                    role=f["role"],
                    distribution=Distribution.from_dict(f["distribution"]),
                )
                for f in data["features"]
            ),
            multivariate=None if multivariate is None else PcaDetector.from_dict(multivariate),
            performance=None if performance is None else PerformanceReference(**performance),
        )


def infer_kind(values: np.ndarray) -> Kind | None:
    """``numeric``, ``categorical``, or None for a column not to profile (lists, or no
    value at all). See the module docstring for the rule."""
    array = np.asarray(values)
    if array.ndim != 1:
        return None
    if array.dtype.kind in "fiu":
        numbers = array.astype(np.float64)
    elif array.dtype.kind == "b":
        return "categorical" if array.size else None
    elif array.dtype.kind == "O":
        present = [v for v in array if category_text(v) is not None]
        if not present:
            return None
        if any(isinstance(v, list | tuple | dict | np.ndarray) for v in present):
            return None
        if not all(_is_number(v) for v in present):
            return "categorical"
        numbers = np.asarray(present, dtype=np.float64)
    else:
        return "categorical" if array.size else None
    present_numbers = numbers[np.isfinite(numbers)]  # infinities are missing values too
    if present_numbers.size == 0:
        return None
    distinct = np.unique(present_numbers).size
    return "numeric" if distinct > CATEGORICAL_MAX_DISTINCT else "categorical"


def build_profile(
    model: str,
    version: str,
    columns: Mapping[str, np.ndarray],
    source: str,
    *,
    labels: np.ndarray | None = None,
    prediction: str | None = None,
    bins: int = DEFAULT_BINS,
) -> ReferenceProfile:
    """The profile of ``columns`` (keyed ``in_<name>`` / ``out_<name>``, equal lengths).

    The PCA detector is fitted on the input features when there are at least two and
    ``MIN_ROWS`` rows. With ``labels`` and ``prediction`` (an ``out_`` column), the
    performance reference is computed too: error rate for a categorical prediction,
    mean absolute error for a numeric one.
    """
    lengths = {len(values) for values in columns.values()}
    if len(lengths) > 1:
        raise ValueError(f"profile columns differ in length: {sorted(lengths)}")
    rows = lengths.pop() if lengths else 0
    if rows == 0:  # the newest profile is the one used: an empty one would test nothing
        raise ValueError(
            f"no rows to profile in {source}: a reference needs the rows the "
            "version was trained or validated on"
        )
    features: list[FeatureProfile] = []
    values_of: dict[str, np.ndarray] = {}
    for column, raw in columns.items():
        prefix = next((p for p in _ROLES if column.startswith(p)), None)
        if prefix is None:
            raise ValueError(f"profile column {column!r} must start with 'in_' or 'out_'")
        values = unmask(raw)
        if values.dtype.kind == "f":  # before the kind: a category "inf" would never match
            values = _infinities_as_missing(values, column, source)
        kind = infer_kind(values)
        if kind is None:
            continue
        if kind == "numeric":
            values = _infinities_as_missing(as_float(values), column, source)
            distribution = numeric_reference(values, bins)
        else:
            distribution = categorical_reference(values)
        features.append(FeatureProfile(column[len(prefix) :], column, _ROLES[prefix], distribution))
        values_of[column] = values
    if not features:
        raise ValueError(
            f"no column of {source} can be profiled (numbers or categories are needed; "
            f"got {', '.join(columns) or 'no columns'})"
        )
    performance = None
    if labels is not None and prediction is not None:
        if prediction not in columns:
            raise ValueError(f"prediction column {prediction!r} is not among the columns")
        performance = performance_reference(prediction, columns[prediction], labels)
    return ReferenceProfile(
        model=model,
        version=version,
        created=datetime.now(UTC),
        source=source,
        rows=rows,
        features=tuple(features),
        multivariate=_detector(features, values_of, rows),
        performance=performance,
    )


def _infinities_as_missing(values: np.ndarray, column: str, source: str) -> np.ndarray:
    """``values`` with every infinity made NaN (missing), warning when there were any."""
    infinite = np.isinf(values)
    count = int(infinite.sum())
    if not count:
        return values
    positive = int(np.count_nonzero(infinite & (values > 0)))
    log.warning(
        "%s: column %s holds %d infinite values of %d (%d +inf, %d -inf); the profile counts "
        "them as missing values, as the drift job counts them in the prediction log",
        source,
        column,
        count,
        values.size,
        positive,
        count - positive,
    )
    return np.where(infinite, np.nan, values)


def performance_reference(
    prediction: str, predictions: np.ndarray, labels: np.ndarray
) -> PerformanceReference | None:
    """Error rate (categorical predictions) or MAE of ``predictions`` (the values of the
    column ``prediction``) against ``labels``; rows without a label are left out; None
    when no row has one."""
    predictions = unmask(predictions)
    metric: Metric = "mean_absolute_error" if infer_kind(predictions) == "numeric" else "error_rate"
    errors = row_errors(metric, predictions, labels)
    if errors.size == 0:
        return None
    return PerformanceReference(
        metric, prediction, int(errors.size), float(errors.mean()), float(errors.std())
    )


def profile_from_file(
    path: Path,
    model: str,
    version: str,
    *,
    label: str | None,
    features: Sequence[str] | None,
    prediction_columns: Mapping[str, np.ndarray] | None = None,
) -> ReferenceProfile:
    """The profile of a CSV or Parquet training set.

    ``features`` are the model's input names (None: every column but the label); the
    file's columns match them case-insensitively ("Fare" for "fare") and become
    ``in_<lower-case name>``. ``prediction_columns`` are ``out_*`` columns the caller
    computed by running the model on the file's rows; with a ``label``, the first one of
    the label's kind (a class for a categorical label), else the first scalar one, is
    the prediction the performance reference scores.
    """
    table = _read_table(Path(path))
    label_column = _match(label, table, path) if label is not None else None
    wanted = features if features is not None else [c for c in table if c != label_column]
    columns: dict[str, np.ndarray] = {
        f"in_{name.lower()}": table[_match(name, table, path)] for name in wanted
    }
    for name, values in (prediction_columns or {}).items():
        if not name.startswith("out_"):
            raise ValueError(f"prediction column {name!r} must start with 'out_'")
        columns[name] = unmask(values)
    labels = None if label_column is None else table[label_column]
    prediction = None if labels is None else _scored_prediction(columns, labels)
    return build_profile(
        model,
        version,
        columns,
        f"file:{Path(path).name}",
        labels=labels,
        prediction=prediction,
    )


def _scored_prediction(columns: Mapping[str, np.ndarray], labels: np.ndarray) -> str | None:
    """The output to score against ``labels``: the first of the label's kind (a class
    label rather than a probability), else the first that can be profiled."""
    kinds = {
        name: infer_kind(values) for name, values in columns.items() if name.startswith("out_")
    }
    wanted = infer_kind(unmask(labels))
    matching = [name for name, kind in kinds.items() if kind is not None and kind == wanted]
    usable = [name for name, kind in kinds.items() if kind is not None]
    chosen = matching or usable
    return chosen[0] if chosen else None


def _detector(
    features: Sequence[FeatureProfile], values_of: Mapping[str, np.ndarray], rows: int
) -> PcaDetector | None:
    inputs = [f for f in features if f.role == "input"]
    if len(inputs) < 2 or rows < MIN_ROWS:
        return None
    numeric = [f.column for f in inputs if f.distribution.kind == "numeric"]
    categorical = {
        f.column: tuple(c for c in f.distribution.categories if c != OTHER)
        for f in inputs
        if f.distribution.kind == "categorical"
    }
    try:
        return fit_pca_detector(values_of, numeric, categorical)
    except ValueError:  # constant inputs: nothing multivariate to watch
        return None


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float | np.integer | np.floating) and not isinstance(
        value, bool | np.bool_
    )


def _read_table(path: Path) -> dict[str, np.ndarray]:
    suffix = path.suffix.lower()
    if suffix in (".parquet", ".pq"):
        reader = "read_parquet"
    elif suffix in (".csv", ".tsv", ".txt"):
        reader = "read_csv_auto"
    else:
        raise ValueError(f"{path}: reference files must be CSV (.csv) or Parquet (.parquet)")
    if not path.is_file():
        raise FileNotFoundError(f"reference file not found: {path}")
    with duckdb.connect() as con:
        table = f"{reader}({sql_string(str(path))})"
        selected = _numbers_read_as_text(con, table) if reader == "read_csv_auto" else "*"
        fetched = con.execute(f"SELECT {selected} FROM {table}").fetchnumpy()
    return {name: unmask(values) for name, values in fetched.items()}


def _numbers_read_as_text(con: duckdb.DuckDBPyConnection, table: str) -> str:
    """The select list of a CSV that reads as DOUBLE its text columns of numbers with an
    infinity among them.

    DuckDB's CSV sniffer reads a column of numbers as text when its first value is
    ``inf``, and a text column would be profiled as categories, one per distinct number.
    Columns of numbers it keeps as text on purpose (``00501``, ``+1``) stay text.
    """
    described = con.execute(f"DESCRIBE SELECT * FROM {table}").fetchall()
    columns = [quote_identifier(str(row[0])) for row in described]
    text = [column for column, row in zip(columns, described, strict=True) if row[1] == "VARCHAR"]
    if not text:
        return "*"
    infinite = "('Infinity'::DOUBLE, '-Infinity'::DOUBLE)"
    all_numbers = ", ".join(
        f"count({c}) = count(TRY_CAST({c} AS DOUBLE)) AND "
        f"count(*) FILTER (WHERE TRY_CAST({c} AS DOUBLE) IN {infinite}) > 0"
        for c in text
    )
    found = con.execute(f"SELECT {all_numbers} FROM {table}").fetchall()[0]
    numbers = {column for column, only_numbers in zip(text, found, strict=True) if only_numbers}
    return ", ".join(f"CAST({c} AS DOUBLE) AS {c}" if c in numbers else c for c in columns)


def _match(name: str, table: Mapping[str, np.ndarray], path: Path) -> str:
    """The file's column for ``name``: exact, else the one equal ignoring case."""
    if name in table:
        return name
    found = [column for column in table if column.lower() == name.lower()]
    if len(found) == 1:
        return found[0]
    problem = "matches several columns" if found else "is not a column"
    raise ValueError(f"{name!r} {problem} of {path}; its columns are: {', '.join(table)}")

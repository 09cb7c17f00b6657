"""Infinities in numeric values are missing values, on both sides of the comparison.

A training set with ``inf`` in a numeric column gave a profile with NaN for its standard
deviation and mean, an infinite extent and infinite (or NaN) edges, so every Wasserstein
score of the feature was NaN; a CSV column starting with ``inf`` was even read as text,
one category per number. The profile counts infinities as missing, as it counts NaN, and
says so; the window of the log counts them the same way, so that reference and window
compare like with like.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pyarrow as pa  # type: ignore[import-untyped]
import pyarrow.parquet as pq  # type: ignore[import-untyped]
import pytest
from prometheus_client import CollectorRegistry

from drift.distributions import Distribution
from drift.missing import missing_share_drift
from drift.profile import build_profile, infer_kind, performance_reference, profile_from_file
from drift.stats import psi
from drift.verdict import TestSettings
from drift.window import scan_window, window_bounds
from monitoring.prediction_log import (
    LogSettings,
    PredictionLogWriter,
    PredictionRecord,
    connect_readonly,
)

DOC = Path(__file__).resolve().parents[2] / "docs" / "drift.md"
ROWS = 400
#: Where the fare column holds an infinity, and where nothing: +inf, -inf, empty.
POSITIVE = range(0, 40, 2)
NEGATIVE = range(1, 10, 2)
EMPTY = range(100, 103)
END = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)


def fares() -> np.ndarray:
    values = np.round(np.random.default_rng(0).gamma(2.0, 10.0, ROWS), 2)
    values[list(POSITIVE)] = np.inf
    values[list(NEGATIVE)] = -np.inf
    values[list(EMPTY)] = np.nan
    return values


def finite_fares() -> np.ndarray:
    values = fares()
    values[~np.isfinite(values)] = np.nan
    return values


def write_csv(path: Path) -> None:
    """Infinities written the ways a CSV holds them: ``inf``, ``-inf``, ``Infinity``."""
    lines = ["Fare,Sex"]
    for i, fare in enumerate(fares()):
        if math.isnan(fare):
            text = ""
        elif math.isinf(fare):
            text = ("Infinity" if i % 4 == 0 else "inf") if fare > 0 else "-inf"
        else:
            text = repr(float(fare))
        lines.append(f"{text},{'male' if i % 3 else 'female'}")
    path.write_text("\n".join(lines) + "\n")


def write_parquet(path: Path) -> None:
    sex = ["male" if i % 3 else "female" for i in range(ROWS)]
    pq.write_table(pa.table({"Fare": fares(), "Sex": sex}), path)


@pytest.mark.parametrize(
    ("name", "write"), [("train.csv", write_csv), ("train.parquet", write_parquet)]
)
def test_infinities_in_a_training_file_are_missing_values_and_named_in_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, name: str, write: Callable[[Path], None]
) -> None:
    path = tmp_path / name
    write(path)

    with caplog.at_level(logging.WARNING, logger="driftgate.drift"):
        profile = profile_from_file(path, "titanic", "1", label=None, features=None)

    fare = profile.feature("in_fare").distribution
    infinite = len(POSITIVE) + len(NEGATIVE)
    assert fare.missing == infinite + len(EMPTY)
    assert fare.total == ROWS - fare.missing
    numbers = [fare.low, fare.high, fare.scale, fare.mean, *fare.edges, *fare.quantiles.values()]
    assert all(v is not None and math.isfinite(v) for v in numbers), numbers
    # Exactly the profile of the same column with those values left empty.
    expected = (
        build_profile("titanic", "1", {"in_fare": finite_fares()}, "test")
        .feature("in_fare")
        .distribution
    )
    assert fare.edges == expected.edges
    assert list(fare.counts) == list(expected.counts)
    assert (fare.low, fare.high, fare.scale) == (expected.low, expected.high, expected.scale)
    warned = [r.getMessage() for r in caplog.records]
    assert warned == [
        f"file:{name}: column in_fare holds {infinite} infinite values of {ROWS} "
        f"({len(POSITIVE)} +inf, {len(NEGATIVE)} -inf); the profile counts them as missing "
        "values, as the drift job counts them in the prediction log"
    ]
    if name == "train.csv":
        assert warned[0] in DOC.read_text()  # the line docs/drift.md shows


def test_a_column_without_infinities_builds_without_a_warning(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.WARNING, logger="driftgate.drift"):
        build_profile("titanic", "1", {"in_fare": finite_fares()}, "test")
    assert caplog.records == []


def test_an_infinite_prediction_has_no_error_in_the_performance_reference() -> None:
    predictions = np.array([*range(12), np.inf, -np.inf], dtype=np.float64)
    labels = np.array([*np.arange(12) + 0.5, 3.0, 4.0])

    performance = performance_reference("out_price", predictions, labels)

    assert performance is not None
    assert performance.metric == "mean_absolute_error"
    assert performance.n == 12
    assert performance.mean == pytest.approx(0.5)


def scanned(tmp_path: Path, values: np.ndarray) -> tuple[Distribution, Distribution]:
    """The reference of ``values`` and the window of the same values logged as they are
    (NaN as NULL, infinities as such: a DOUBLE column), newest last."""
    store = tmp_path / "store"
    writer = PredictionLogWriter(store, LogSettings(store=str(store)), CollectorRegistry())
    writer.start()
    writer.submit(
        [
            PredictionRecord(
                request_id=f"r{i}",
                row=0,
                timestamp=END - timedelta(seconds=i),
                route="titanic",
                arm="a",
                role="primary",
                model="titanic",
                version="1",
                replica="http://127.0.0.1:8001",
                dialect="eval",
                status=200,
                latency_s=0.003,
                trace_id=None,
                inputs={"fare": None if math.isnan(fare) else float(fare)},
                outputs={},
            )
            for i, fare in enumerate(values)
        ]
    )
    writer.close()
    profile = build_profile("titanic", "1", {"in_fare": values}, "test")
    con = connect_readonly(store)
    window = window_bounds(con, "titanic", "1", "a", end=END, rows=len(values))
    assert window is not None
    scan = scan_window(con, profile, "titanic", "1", "a", window)
    con.close()
    return profile.feature("in_fare").distribution, scan.distributions["in_fare"]


def test_the_window_counts_infinities_as_missing_as_the_profile_does(tmp_path: Path) -> None:
    """The same values logged as trained on: no change in the share of missing values, and
    the same counts in the bins."""
    reference, current = scanned(tmp_path, fares())

    assert current.missing == len(POSITIVE) + len(NEGATIVE) + len(EMPTY)
    assert (list(current.counts), current.missing) == (list(reference.counts), reference.missing)
    assert missing_share_drift(reference, current, 1, TestSettings()).score == 0.0


def test_a_few_distinct_numbers_with_infinities_are_categories_without_them(
    tmp_path: Path,
) -> None:
    """Numbers with few distinct values are profiled as categories: an infinity was one
    ("inf"), which the log never matched, so the same traffic drifted (PSI 1.4)."""
    values = np.array([float(i % 5) if i % 10 else np.inf for i in range(ROWS)])

    reference, current = scanned(tmp_path, values)

    assert reference.kind == "categorical" and "inf" not in reference.categories
    assert reference.missing == current.missing == ROWS // 10
    assert list(current.counts) == list(reference.counts)
    assert psi(reference, current) == 0.0


def test_infinities_are_no_distinct_numbers_when_the_kind_is_inferred() -> None:
    """Nine numbers and gaps are categories whether the gaps are NaN or infinities."""
    nine = [*range(9)] * 20
    assert infer_kind(np.array([*nine, np.nan, np.nan])) == "categorical"
    assert infer_kind(np.array([*nine, np.inf, -np.inf])) == "categorical"


def test_numbers_a_csv_keeps_as_text_stay_categories(tmp_path: Path) -> None:
    """Only a column of numbers with an infinity is read as numbers: DuckDB keeps codes such
    as ``00501`` and ``+1`` as text on purpose, and they are categories."""
    zips = [
        f"{code:05d}" for code in (501, 544, 601, 602, 603, 2134, 2135, 7030, 8540, 10001, 60601)
    ]
    lines = ["Zip,Sku"] + [f"{zips[i % len(zips)]},{'+-'[i % 2]}{i % 3}" for i in range(ROWS)]
    path = tmp_path / "train.csv"
    path.write_text("\n".join(lines) + "\n")

    profile = profile_from_file(path, "shop", "1", label=None, features=None)

    zip_code = profile.feature("in_zip").distribution
    assert zip_code.kind == "categorical" and "00501" in zip_code.categories
    sku = profile.feature("in_sku").distribution
    assert sku.kind == "categorical" and {"+0", "-0"} <= set(sku.categories)

"""A reference profile from the first rows a version served: its own columns only, though
the store's view holds every model's, and a skip, not an error, for a version that logs
nothing a profile describes (the demo's iris: a list of 4 floats in, a list of 3 out)."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest

from drift.log_profile import NothingToProfile, profile_from_log
from monitoring.prediction_log import (
    LogSettings,
    PredictionLogWriter,
    PredictionRecord,
    connect_readonly,
)

START = datetime(2025, 3, 14, 12, 0, tzinfo=UTC)


def _record(
    model: str, i: int, inputs: Mapping[str, object], outputs: Mapping[str, object], status: int
) -> PredictionRecord:
    return PredictionRecord(
        request_id=f"{model}-{i}",
        row=0,
        timestamp=START + timedelta(seconds=i),
        route=model,
        arm="stable",
        role="primary",
        model=model,
        version="1",
        replica="r",
        dialect="v2",
        status=status,
        latency_s=0.01,
        trace_id=None,
        inputs=dict(inputs),
        outputs=dict(outputs),
    )


def _store(tmp_path: Path, records: list[PredictionRecord]) -> Path:
    writer = PredictionLogWriter(tmp_path / "store", LogSettings())
    writer.start()
    writer.submit(records)
    writer.close()
    return tmp_path / "store"


def _titanic(rows: int, rng: np.random.Generator) -> list[PredictionRecord]:
    return [
        _record(
            "titanic",
            i,
            {"fare": 1000.0 if i == 0 else float(rng.gamma(2.0, 10.0)), "sex": "f"},
            {"label": int(rng.integers(0, 2))},
            status=500 if i == 0 else 200,  # a failed request is not traffic to learn
        )
        for i in range(rows)
    ]


def _iris(rows: int, rng: np.random.Generator) -> list[PredictionRecord]:
    return [
        _record(
            "iris",
            i,
            {"features": [float(v) for v in rng.normal(5.0, 1.0, 4)]},
            {"probabilities": [0.2, 0.3, 0.5]},
            status=200,
        )
        for i in range(rows)
    ]


def test_profile_from_the_first_rows_the_version_served(tmp_path: Path) -> None:
    rng = np.random.default_rng(5)
    records = _titanic(60, rng) + [
        _record("iris", i, {"width": 1.0}, {"label": 1}, 200) for i in range(60)
    ]
    store = _store(tmp_path, records)

    with connect_readonly(store) as con:
        assert profile_from_log(con, "titanic", "1", rows=100) is None
        profile = profile_from_log(con, "titanic", "1", rows=50)

    assert profile is not None
    assert profile.source == "log:first 50 rows"
    assert profile.rows == 50
    # iris's column is in the view but has no value for titanic: not profiled.
    assert [f.column for f in profile.features] == ["in_fare", "in_sex", "out_label"]
    high = profile.feature("in_fare").distribution.high
    assert high is not None and high < 1000.0


def test_a_version_logging_only_lists_has_nothing_to_profile(tmp_path: Path) -> None:
    """iris's reference was built from every model's columns of the view: titanic's, all
    NULL in iris's rows, so it failed with ``no column of log:first 50 rows can be profiled
    (... got in_fare, in_sex, out_label)``, naming the other model's columns."""
    rng = np.random.default_rng(6)
    store = _store(tmp_path, _titanic(60, rng) + _iris(60, rng))

    with connect_readonly(store) as con:
        with pytest.raises(NothingToProfile) as raised:
            profile_from_log(con, "iris", "1", rows=50)
        assert profile_from_log(con, "titanic", "1", rows=50) is not None

    assert str(raised.value) == (
        "nothing to test (its values are all in list columns, which drift does not test: "
        "in_features, out_probabilities)"
    )


def test_a_version_with_lists_and_numbers_is_profiled_on_its_numbers(tmp_path: Path) -> None:
    rng = np.random.default_rng(7)
    records = _titanic(60, rng) + [
        _record("iris", i, {"features": [1.0, 2.0], "width": float(i)}, {"class": i % 3}, 200)
        for i in range(60)
    ]
    store = _store(tmp_path, records)

    with connect_readonly(store) as con:
        profile = profile_from_log(con, "iris", "1", rows=50)

    assert profile is not None
    assert [f.column for f in profile.features] == ["in_width", "out_class"]


def test_a_version_logging_no_value_has_nothing_to_profile(tmp_path: Path) -> None:
    rng = np.random.default_rng(8)
    records = _titanic(60, rng) + [_record("empty", i, {}, {}, 200) for i in range(60)]
    store = _store(tmp_path, records)

    with connect_readonly(store) as con, pytest.raises(NothingToProfile) as raised:
        profile_from_log(con, "empty", "1", rows=50)

    assert str(raised.value) == "nothing to test (no input or output value in its first 50 rows)"

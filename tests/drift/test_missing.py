"""The missing-share test: a numeric feature that starts arriving empty is flagged, by name,
even though its values' distribution did not move."""

from __future__ import annotations

import numpy as np

from drift.distributions import numeric_counts, numeric_reference
from drift.missing import missing_share_drift, needs_missing_test
from drift.verdict import TestSettings

SETTINGS = TestSettings()


def _sample(rows: int, missing_share: float, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    values = rng.normal(30, 12, rows)
    values[rng.random(rows) < missing_share] = np.nan
    return values


def _window(reference, values):
    present = values[~np.isnan(values)]
    missing = int(np.isnan(values).sum())
    return reference.with_counts(numeric_counts(present, reference.edges), missing)


def test_a_jump_in_missing_values_is_flagged_with_its_size() -> None:
    reference = numeric_reference(_sample(10_000, 0.05, seed=0))
    window = _window(reference, _sample(5_000, 0.30, seed=1))
    assert needs_missing_test(reference, window)
    result = missing_share_drift(reference, window, n_tests=12, settings=SETTINGS)
    assert result.drifted
    assert result.statistic == "missing_share"
    assert 0.22 < result.score < 0.28
    assert result.threshold == SETTINGS.alpha / 12


def test_the_same_share_is_not_flagged_in_most_windows() -> None:
    reference = numeric_reference(_sample(10_000, 0.05, seed=0))
    flagged = [
        missing_share_drift(
            reference, _window(reference, _sample(5_000, 0.05, seed=s)), 12, SETTINGS
        ).drifted
        for s in range(1, 101)
    ]
    assert sum(flagged) <= 2


def test_a_tiny_change_on_a_huge_window_stays_under_the_floor() -> None:
    reference = numeric_reference(_sample(100_000, 0.05, seed=0))
    window = _window(reference, _sample(1_000_000, 0.06, seed=2))
    result = missing_share_drift(reference, window, n_tests=1, settings=SETTINGS)
    assert result.p_value is not None and result.p_value < 1e-6  # significant...
    assert not result.drifted  # ...but one point is under the two-point floor


def test_features_without_missing_values_get_no_test() -> None:
    reference = numeric_reference(_sample(1_000, 0.0, seed=0))
    assert not needs_missing_test(reference, _window(reference, _sample(500, 0.0, seed=1)))
    assert needs_missing_test(reference, _window(reference, _sample(500, 0.1, seed=1)))

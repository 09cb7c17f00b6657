"""Calibrated drift decisions: the right statistic, the promised false-alarm rate, real power.

Windows are drawn from the reference's own generator (no drift) or from a shifted one; the
reference is one fixed sample of 10,000 rows, as a profile built from a training set is.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from drift.calibration import (
    MAX_ROUNDS,
    calibrated_threshold,
    calibration_rounds,
    default_statistic,
    evaluate,
    size_bucket,
)
from drift.distributions import (
    Distribution,
    categorical_reference,
    counts_from_map,
    numeric_counts,
    numeric_reference,
)
from drift.stats import batch_scores, counts_with_missing
from drift.verdict import TestSettings, effect_text

LABELS = np.array(["a", "b", "c", "d"])
SHARES = np.array([0.4, 0.3, 0.2, 0.1])
#: Only the resampled null decides: no effect-size floor.
UNFLOORED = TestSettings(min_effect={})


def categorical_window(reference: Distribution, values: np.ndarray) -> Distribution:
    """Count a sample the way a window scan does (DuckDB's value -> count map)."""
    names, counts = np.unique(values, return_counts=True)
    found = dict(zip(names.tolist(), counts.tolist(), strict=True))
    return reference.with_counts(counts_from_map(found, reference.categories), 0)


@pytest.fixture(scope="module")
def numeric() -> Distribution:
    return numeric_reference(np.random.default_rng(1).normal(size=10_000))


@pytest.fixture(scope="module")
def categorical() -> Distribution:
    rng = np.random.default_rng(2)
    return categorical_reference(rng.choice(LABELS, p=SHARES, size=10_000).tolist())


def numeric_windows(reference: Distribution, count: int, rows: int, shift: float = 0.0):
    rng = np.random.default_rng(11)
    for _ in range(count):
        values = rng.normal(shift, 1.0, size=rows)
        yield reference.with_counts(numeric_counts(values, reference.edges), 0)


def categorical_windows(reference: Distribution, count: int, rows: int, shares=SHARES):
    rng = np.random.default_rng(12)
    for _ in range(count):
        yield categorical_window(reference, rng.choice(LABELS, p=shares, size=rows))


# The default table


@pytest.mark.parametrize(
    ("kind", "n", "expected"),
    [
        ("numeric", 50, "ks"),
        ("numeric", 1_000, "ks"),
        ("numeric", 1_001, "wasserstein"),
        ("categorical", 1_000, "chi_square"),
        ("categorical", 1_001, "jensen_shannon"),
    ],
)
def test_default_statistic_table(kind, n, expected):
    assert default_statistic(kind, n, TestSettings()) == expected


def test_settings_override_the_table_per_kind():
    settings = TestSettings(small_sample=10, statistics={"numeric": "psi"})
    assert default_statistic("numeric", 5, settings) == "psi"
    assert default_statistic("categorical", 5, settings) == "chi_square"
    assert default_statistic("categorical", 11, settings) == "jensen_shannon"


# False alarms and power


def test_score_tests_false_alarm_at_the_level_on_undrifted_windows(numeric, categorical):
    for reference, windows in (
        (numeric, numeric_windows(numeric, 400, 5_000)),
        (categorical, categorical_windows(categorical, 400, 5_000)),
    ):
        results = [evaluate(reference, window, 1, UNFLOORED) for window in windows]
        assert {r.statistic for r in results} <= {"wasserstein", "jensen_shannon"}
        rate = np.mean([r.drifted for r in results])
        assert 0.01 <= rate <= 0.10, (reference.kind, rate)


def test_score_tests_catch_a_half_sigma_shift_and_a_twenty_point_share_change(numeric, categorical):
    shifted = [
        evaluate(numeric, w, 1, TestSettings()) for w in numeric_windows(numeric, 50, 5_000, 0.5)
    ]
    assert all(r.drifted for r in shifted)
    moved = np.array([0.2, 0.4, 0.8 / 3, 0.4 / 3])  # "a" loses 20 points, the rest share them
    changed = [
        evaluate(categorical, w, 1, TestSettings())
        for w in categorical_windows(categorical, 50, 5_000, moved)
    ]
    assert all(r.drifted for r in changed)


def test_p_value_tests_on_small_windows_hold_the_level_and_catch_shifts(numeric, categorical):
    quiet = [
        *(evaluate(numeric, w, 1, TestSettings()) for w in numeric_windows(numeric, 200, 500)),
        *(
            evaluate(categorical, w, 1, TestSettings())
            for w in categorical_windows(categorical, 200, 500)
        ),
    ]
    assert {r.statistic for r in quiet} == {"ks", "chi_square"}
    assert np.mean([r.drifted for r in quiet]) <= 0.10
    shifted = [
        evaluate(numeric, w, 1, TestSettings()) for w in numeric_windows(numeric, 20, 500, 0.5)
    ]
    assert all(r.drifted and r.p_value is not None and r.p_value < 0.05 for r in shifted)


# Thresholds


def test_bonferroni_divides_alpha_over_the_tests(numeric):
    window = next(numeric_windows(numeric, 1, 300))
    result = evaluate(numeric, window, 10, TestSettings(alpha=0.05))
    assert result.statistic == "ks" and result.compares == "p_value"
    assert result.threshold == pytest.approx(0.005)


def test_thresholds_shrink_with_the_window_and_the_floor_holds(numeric):
    small, large = (
        calibrated_threshold("wasserstein", numeric, n, 0.01, UNFLOORED) for n in (500, 50_000)
    )
    assert small > 2 * large
    floored = calibrated_threshold("wasserstein", numeric, 50_000, 0.01, TestSettings())
    assert floored == TestSettings().min_effect["wasserstein"] > large


def p_values_always(**min_effect: float) -> TestSettings:
    """The p-value tests on any window size, as a large ``small_sample`` gives."""
    return TestSettings(small_sample=10**9, min_effect=min_effect)


def test_min_effect_ks_is_a_floor_on_the_distance_d_a_significant_ks_test_must_show(numeric):
    """``min_effect.ks`` was accepted and documented, and changed nothing: KS drifted on
    its p-value alone, so a huge window alerted on a shift of a twentieth of a sigma."""
    tiny = next(numeric_windows(numeric, 1, 200_000, shift=0.05))
    unfloored = evaluate(numeric, tiny, 1, p_values_always())
    assert unfloored.statistic == "ks" and unfloored.drifted
    assert unfloored.p_value is not None and unfloored.p_value < 1e-4
    assert unfloored.min_effect is None

    floored = evaluate(numeric, tiny, 1, p_values_always(ks=0.1))
    assert floored.p_value == unfloored.p_value
    assert floored.p_value is not None and floored.p_value < floored.threshold
    assert floored.effect == floored.score < 0.1 == floored.min_effect
    assert not floored.drifted

    far = next(numeric_windows(numeric, 1, 200_000, shift=1.0))
    assert evaluate(numeric, far, 1, p_values_always(ks=0.1)).drifted


def test_min_effect_chi_square_is_a_floor_on_cramers_v(categorical):
    """Chi-square's own statistic grows with the sample, so its floor is on Cramer's V:
    sqrt(chi-square / N) over the 2 x K table of N rows, from 0 (same shares) to 1."""
    shifted = np.array([0.42, 0.28, 0.2, 0.1])
    window = next(categorical_windows(categorical, 1, 200_000, shares=shifted))
    floor = p_values_always(chi_square=0.1)
    unfloored = evaluate(categorical, window, 1, p_values_always())
    floored = evaluate(categorical, window, 1, floor)
    assert unfloored.statistic == floored.statistic == "chi_square"
    assert unfloored.drifted
    assert floored.p_value is not None and floored.p_value < floored.threshold
    n = categorical.rows + window.rows
    assert floored.effect == pytest.approx(math.sqrt(floored.score / n))
    assert floored.effect is not None and floored.effect < 0.1 and not floored.drifted

    swapped = next(categorical_windows(categorical, 1, 2_000, shares=SHARES[::-1]))
    assert evaluate(categorical, swapped, 1, floor).drifted  # V about 0.4


def test_a_p_value_test_reports_its_effect_size_without_a_floor(numeric, categorical):
    """On a large window every p-value is tiny, so an analyst needs the size of the shift
    too: it was reported only when ``min_effect`` named the test."""
    tiny = next(numeric_windows(numeric, 1, 200_000, shift=0.05))
    ks = evaluate(numeric, tiny, 1, p_values_always())
    assert ks.min_effect is None and ks.effect == ks.score
    assert effect_text(ks) == f"D {ks.score:.4g}"

    window = next(categorical_windows(categorical, 1, 2_000, shares=SHARES[::-1]))
    chi = evaluate(categorical, window, 1, p_values_always())
    assert chi.effect == pytest.approx(math.sqrt(chi.score / (categorical.rows + window.rows)))
    assert effect_text(chi).startswith("Cramér's V 0.")


def test_window_sizes_are_bucketed_down_to_two_significant_digits(numeric):
    assert [size_bucket(n) for n in (7, 99, 123, 5_437, 1_999_999)] == [
        7,
        99,
        120,
        5_400,
        1_900_000,
    ]
    at = {n: calibrated_threshold("psi", numeric, n, 0.05, UNFLOORED) for n in (5_437, 5_400)}
    assert at[5_437] == at[5_400]


def test_small_levels_get_more_rounds_and_a_fitted_tail(numeric):
    level = 0.05 / 50
    assert calibration_rounds(level, TestSettings()) == MAX_ROUNDS
    assert calibration_rounds(0.05, TestSettings()) == 400
    assert calibration_rounds(0.05, TestSettings(rounds=1_000)) == 1_000
    # The fitted tail against the plain quantile of many more draws.
    rng = np.random.default_rng(99)
    shares = counts_with_missing(numeric) / numeric.rows
    rounds = 100_000
    null = batch_scores(
        "wasserstein",
        numeric,
        rng.multinomial(numeric.rows, shares, size=rounds),
        rng.multinomial(2_000, shares, size=rounds),
    )
    expected = float(np.quantile(null, 1 - level))
    threshold = calibrated_threshold("wasserstein", numeric, 2_000, level, UNFLOORED)
    assert threshold == pytest.approx(expected, rel=0.08)


def test_a_constant_reference_drifts_when_its_values_change_and_not_when_they_stay():
    """The verdict and score of a constant numeric feature on a large window (Wasserstein):
    0 against the same value; the share of values that moved, held to min_effect, against
    others. It scored 0 whatever the window held."""
    reference = numeric_reference(np.full(10_000, 0.1))

    def window(values: np.ndarray) -> Distribution:
        return reference.with_counts(numeric_counts(values, reference.edges), 0)

    same = evaluate(reference, window(np.full(5_000, 0.1)), 3, TestSettings())
    assert (same.statistic, same.score, same.drifted) == ("wasserstein", 0.0, False)
    changed = np.concatenate([np.full(4_000, 0.1), np.full(1_000, 0.25)])
    moved = evaluate(reference, window(changed), 3, TestSettings())
    assert (moved.statistic, moved.drifted) == ("wasserstein", True)
    assert moved.score == pytest.approx(0.2)  # a fifth of the values moved
    assert moved.threshold == TestSettings().min_effect["wasserstein"]  # its null is all 0
    few = np.concatenate([np.full(4_800, 0.1), np.full(200, 0.05)])  # 4 %: under the floor
    assert not evaluate(reference, window(few), 3, TestSettings()).drifted


def test_an_empty_window_scores_nan_and_does_not_drift(numeric, categorical):
    empty_numeric = numeric.with_counts(np.zeros_like(numeric.counts), missing=40)
    for settings in (TestSettings(), TestSettings(small_sample=0)):
        result = evaluate(numeric, empty_numeric, 3, settings)
        assert math.isnan(result.score) and not result.drifted
    # Categorical tests count missing as a category: a window of only NULLs is drift.
    only_nulls = categorical.with_counts(np.zeros_like(categorical.counts), missing=400)
    assert evaluate(categorical, only_nulls, 3, TestSettings()).drifted


def test_evaluate_refuses_a_statistic_that_does_not_fit(categorical):
    with pytest.raises(ValueError, match="wasserstein compares numeric features"):
        evaluate(categorical, categorical, 1, TestSettings(), statistic="wasserstein")
    with pytest.raises(ValueError, match="n_tests must be at least 1"):
        evaluate(categorical, categorical, 0, TestSettings())

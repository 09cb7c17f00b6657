"""The drift statistics agree with scipy on raw samples and behave as distances should."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.spatial.distance
import scipy.stats

from drift.distributions import (
    OTHER,
    Distribution,
    categorical_counts,
    categorical_reference,
    numeric_counts,
    numeric_reference,
)
from drift.stats import (
    STATISTICS,
    batch_scores,
    chi_square,
    counts_with_missing,
    jensen_shannon,
    ks,
    psi,
    score,
    wasserstein,
)

CATEGORIES = np.array(["red", "green", "blue", "grey"])


def numeric_pair(
    reference: np.ndarray, current: np.ndarray, bins: int = 20
) -> tuple[Distribution, Distribution]:
    ref = numeric_reference(reference, bins=bins)
    missing = int(np.isnan(current).sum())
    return ref, ref.with_counts(numeric_counts(current, ref.edges), missing)


def categorical_pair(reference: list[str | None], current: list[str | None]):
    ref = categorical_reference(reference)
    missing = sum(v is None for v in current)
    return ref, ref.with_counts(categorical_counts(current, ref.categories), missing)


def category_sample(rng: np.random.Generator, shares: list[float], size: int) -> list[str | None]:
    return [str(c) for c in rng.choice(CATEGORIES, p=shares, size=size)]


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(7)


# Against scipy on raw samples


@pytest.mark.parametrize(("shift", "spread"), [(0.0, 1.0), (0.3, 1.0), (0.0, 1.5), (0.5, 0.8)])
def test_binned_ks_is_close_to_ks_2samp_with_fine_bins(rng, shift, spread):
    a, b = rng.normal(size=10_000), rng.normal(shift, spread, size=5_000)
    distance, p_value = ks(*numeric_pair(a, b, bins=100))
    raw = scipy.stats.ks_2samp(a, b)
    assert distance == pytest.approx(raw.statistic, abs=0.02)
    # The ECDFs are compared at the edges only: never a larger D, so never a smaller p.
    assert distance <= raw.statistic + 1e-12
    assert p_value >= raw.pvalue * 0.999


def test_wasserstein_is_close_to_scipy_in_reference_stds(rng):
    a = rng.normal(2.0, 3.0, size=10_000)
    for b in (rng.normal(2.0 + 1.5, 3.0, size=5_000), rng.normal(2.0, 4.5, size=5_000)):
        expected = scipy.stats.wasserstein_distance(a, b) / a.std()
        assert wasserstein(*numeric_pair(a, b, bins=100)) == pytest.approx(expected, rel=0.05)


def test_jensen_shannon_equals_scipy_on_the_shares_with_missing(rng):
    reference = [*category_sample(rng, [0.4, 0.3, 0.2, 0.1], 2_000), *[None] * 50]
    current = [*category_sample(rng, [0.1, 0.2, 0.3, 0.4], 1_000), *[None] * 200]
    ref, cur = categorical_pair(reference, current)
    expected = scipy.spatial.distance.jensenshannon(
        counts_with_missing(ref), counts_with_missing(cur), base=2
    )
    assert jensen_shannon(ref, cur) == pytest.approx(expected, rel=1e-12)


def test_chi_square_is_the_two_sample_contingency_test(rng):
    reference = [*category_sample(rng, [0.4, 0.3, 0.3, 0.0], 2_000), *[None] * 30]
    current = [*category_sample(rng, [0.35, 0.35, 0.3, 0.0], 800), *[None] * 20]
    ref, cur = categorical_pair(reference, current)
    table = np.vstack([counts_with_missing(ref), counts_with_missing(cur)])
    table = table[:, table.sum(axis=0) > 0]  # "grey" and OTHER are empty on both sides
    expected = scipy.stats.chi2_contingency(table, correction=False)
    assert chi_square(ref, cur) == pytest.approx((expected.statistic, expected.pvalue))
    # Not a goodness-of-fit against the reference's shares, which ignores its sampling noise.
    shares = table[0] / table[0].sum()
    one_sample = scipy.stats.chisquare(table[1], shares * table[1].sum())
    assert chi_square(ref, cur)[0] != pytest.approx(one_sample.statistic)


def test_psi_by_hand_with_an_empty_missing_bin():
    ref = Distribution(
        kind="categorical", counts=np.array([50, 30, 20]), categories=("a", "b", "c")
    )
    cur = ref.with_counts(np.array([40, 40, 10]), missing=10)
    expected = (
        (0.4 - 0.5) * math.log(0.4 / 0.5)
        + (0.4 - 0.3) * math.log(0.4 / 0.3)
        + (0.1 - 0.2) * math.log(0.1 / 0.2)
        + (0.1 - 1e-4) * math.log(0.1 / 1e-4)  # the reference had no missing: 1e-4 share
    )
    assert psi(ref, cur) == pytest.approx(expected, rel=1e-12)


# Properties


def test_identical_distributions_score_zero_and_p_one(rng):
    numeric = numeric_reference(np.append(rng.normal(size=3_000), [np.nan] * 10))
    categorical = categorical_reference([*category_sample(rng, [0.4, 0.3, 0.2, 0.1], 3_000)])
    for name, statistic in STATISTICS.items():
        reference = numeric if "numeric" in statistic.kinds else categorical
        same = reference.with_counts(reference.counts * 2, reference.missing * 2)
        value, p_value = score(name, reference, same)
        assert value == pytest.approx(0.0, abs=1e-12), name
        assert p_value is None if not statistic.has_p_value else p_value == pytest.approx(1.0)


@pytest.mark.parametrize("name", ["psi", "jensen_shannon", "wasserstein", "ks", "chi_square"])
def test_a_larger_shift_scores_higher(rng, name):
    a = rng.normal(size=10_000)
    base = rng.normal(size=3_000)
    results = [score(name, *numeric_pair(a, base + shift)) for shift in (0.1, 0.3, 0.6, 1.2)]
    values = [value for value, _ in results]
    assert values == sorted(values) and len(set(values)) == len(values)
    if STATISTICS[name].has_p_value:
        p_values = [p for _, p in results if p is not None]
        assert len(p_values) == 4 and p_values == sorted(p_values, reverse=True)


def test_jensen_shannon_is_symmetric_and_bounded_by_one(rng):
    ref, cur = categorical_pair(
        category_sample(rng, [0.7, 0.1, 0.1, 0.1], 1_000),
        category_sample(rng, [0.1, 0.1, 0.1, 0.7], 1_000),
    )
    assert jensen_shannon(ref, cur) == pytest.approx(jensen_shannon(cur, ref), rel=1e-12)
    disjoint_ref = Distribution(kind="categorical", counts=np.array([10, 0]), categories=("a", "b"))
    disjoint = disjoint_ref.with_counts(np.array([0, 10]), 0)
    assert jensen_shannon(disjoint_ref, disjoint) == pytest.approx(1.0)


def test_missing_values_count_where_the_statistic_counts_them(rng):
    a, b = rng.normal(size=10_000), rng.normal(size=5_000)
    ref, cur = numeric_pair(a, b)
    holes = ref.with_counts(cur.counts, missing=2_000)  # the same values, 2,000 rows gone missing
    assert psi(ref, holes) > 10 * psi(ref, cur)
    assert jensen_shannon(ref, holes) > 2 * jensen_shannon(ref, cur)
    assert chi_square(ref, holes)[1] < 1e-10 < chi_square(ref, cur)[1]
    # KS and Wasserstein compare values; a missing value has none.
    assert ks(ref, holes) == ks(ref, cur)
    assert wasserstein(ref, holes) == wasserstein(ref, cur)


def test_wasserstein_clips_current_values_at_the_reference_extent(rng):
    a = rng.normal(size=10_000)
    ref, far = numeric_pair(a, a[:5_000] + 100.0)
    _, farther = numeric_pair(a, a[:5_000] + 1_000.0)
    assert wasserstein(ref, far) == wasserstein(ref, farther)
    # Every current value sits in the top bin, spread over (e_k, high]: W1 is then the gap
    # between the two binned means, each bin's mass at its midpoint.
    bounds = np.array([ref.low, *ref.edges, ref.high])
    midpoints = (bounds[:-1] + bounds[1:]) / 2
    reference_mean = float(ref.counts @ midpoints / ref.total)
    expected = (midpoints[-1] - reference_mean) / ref.scale
    assert wasserstein(ref, far) == pytest.approx(expected, rel=1e-9)


def test_wasserstein_without_a_scale_uses_the_reference_range():
    counts = np.array([10, 20, 30, 40])
    common = {"kind": "numeric", "edges": (1.0, 2.0, 3.0), "low": 0.0, "high": 4.0}
    unscaled = Distribution(counts=counts, scale=None, **common)  # type: ignore[arg-type]
    zero = Distribution(counts=counts, scale=0.0, **common)  # type: ignore[arg-type]
    scaled = Distribution(counts=counts, scale=4.0, **common)  # type: ignore[arg-type]
    current = unscaled.with_counts(np.array([40, 30, 20, 10]), 0)
    # CDF gaps at 0..4 are 0, .3, .4, .3, 0: two trapezoids of .15 + two of .35 over unit bins.
    assert wasserstein(scaled, current) == pytest.approx(1.0 / 4.0)
    assert (
        wasserstein(unscaled, current) == wasserstein(zero, current) == wasserstein(scaled, current)
    )


@pytest.mark.parametrize("value", [0.1, 3.0, 0.0, -250.0])
def test_a_constant_reference_scores_the_share_of_the_windows_values_that_left_it(value):
    """A reference of one value (0.1 has a standard deviation of 1e-17 by rounding, 3.0 of
    0) scored 0 against any window: its outer bins had no width to measure in."""
    reference = np.full(2_000, value)
    assert numeric_reference(reference).low == numeric_reference(reference).high
    moved = np.concatenate(
        [np.full(700, value), np.full(200, value + 1.0), np.full(100, value - 5.0)]
    )
    scores = {
        "same": wasserstein(*numeric_pair(reference, np.full(1_000, value))),
        "above": wasserstein(*numeric_pair(reference, np.full(1_000, value + 1e-3))),
        "below": wasserstein(*numeric_pair(reference, np.full(1_000, value - 1e-3))),
        "a third moved": wasserstein(*numeric_pair(reference, moved)),
    }
    assert scores == {"same": 0.0, "above": 1.0, "below": 1.0, "a third moved": pytest.approx(0.3)}


def test_chi_square_with_one_category_in_use_has_nothing_to_test():
    ref = Distribution(kind="categorical", counts=np.array([25, 0]), categories=("a", "b"))
    assert chi_square(ref, ref.with_counts(np.array([7, 0]), 0)) == (0.0, 1.0)


# Sparse tables: the asymptotic chi-square law needs expected counts of about 5

ABC = Distribution(
    kind="categorical", counts=np.array([2_500, 1_500, 1_000, 0]), categories=("a", "b", "c", OTHER)
)


def test_one_unseen_value_or_one_null_in_a_small_window_is_not_significant():
    # 5,000 reference rows over a/b/c, 300 window rows like them but one. That one row
    # lands in the window by chance 300 / 5,300 = 5.7 % of the time; the asymptotic law
    # (expected count 0.06 in its cell) would say p < 0.001.
    unseen = ABC.with_counts(np.array([150, 90, 59, 1]), missing=0)
    null = ABC.with_counts(np.array([150, 90, 59, 0]), missing=1)
    for window in (unseen, null):
        statistic, p_value = chi_square(ABC, window)
        assert statistic > 15  # the score is still Pearson's statistic
        assert 0.02 < p_value < 0.1


def test_a_new_category_or_missing_values_arriving_in_volume_are_still_significant():
    unseen = ABC.with_counts(np.array([135, 81, 54, 30]), missing=0)  # 10 % unseen
    nulls = ABC.with_counts(np.array([135, 81, 54, 0]), missing=30)  # missing 0 % -> 10 %
    for window in (unseen, nulls):
        assert chi_square(ABC, window)[1] < 1e-3


def test_a_sparse_table_gets_the_exact_conditional_p_value_reproducibly():
    reference = Distribution(kind="categorical", counts=np.array([2_000, 3]), categories=("a", "b"))
    window = reference.with_counts(np.array([198, 2]), missing=0)
    # 2 x 2 with both margins fixed: the statistic grows with |b's window count - its
    # expected 0.45|, so p = P(X >= 2) for X hypergeometric (5 b's among 2,203 rows, 200 drawn).
    exact = scipy.stats.hypergeom.sf(1, 2_203, 5, 200)
    _, p_value = chi_square(reference, window)
    assert p_value == pytest.approx(exact, abs=0.008)  # Monte Carlo: 10,000 draws
    assert chi_square(reference, window)[1] == p_value  # seeded: the same every run


def test_batch_scores_match_the_single_statistics(rng):
    numeric = numeric_pair(np.append(rng.normal(size=2_000), [np.nan] * 40), rng.normal(size=700))
    categorical = categorical_pair(
        category_sample(rng, [0.4, 0.3, 0.2, 0.1], 2_000),
        [*category_sample(rng, [0.3, 0.3, 0.3, 0.1], 700), None],
    )
    for name, statistic in STATISTICS.items():
        ref, cur = numeric if "numeric" in statistic.kinds else categorical
        batch = batch_scores(
            name,
            ref,
            np.vstack([counts_with_missing(ref)] * 3),
            np.vstack([counts_with_missing(cur)] * 3),
        )
        assert batch == pytest.approx([score(name, ref, cur)[0]] * 3, rel=1e-9), name


# Errors that say what to do


def test_statistics_refuse_what_they_cannot_compare(rng):
    numeric = numeric_reference(rng.normal(size=500))
    categorical = categorical_reference(category_sample(rng, [0.4, 0.3, 0.2, 0.1], 500))
    with pytest.raises(ValueError, match="numeric features, not categorical"):
        wasserstein(categorical, categorical)
    with pytest.raises(ValueError, match="numeric features, not categorical"):
        ks(categorical, categorical)
    other_bins = numeric_reference(rng.normal(size=500) + 1)
    with pytest.raises(ValueError, match="different bins"):
        psi(numeric, other_bins)
    with pytest.raises(ValueError, match="cannot compare a numeric reference"):
        jensen_shannon(numeric, categorical)
    with pytest.raises(ValueError, match="unknown drift statistic 'kl'; use one of"):
        score("kl", numeric, numeric)
    with pytest.raises(ValueError, match="ks needs values that are not missing"):
        ks(numeric, numeric.with_counts(np.zeros_like(numeric.counts), missing=5))

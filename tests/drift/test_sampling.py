"""Synthetic rows from a reference profile reproduce each feature's marginal distribution."""

from __future__ import annotations

import numpy as np
import pytest

from drift.distributions import OTHER, numeric_counts
from drift.profile import ReferenceProfile, build_profile
from drift.sampling import sample_inputs

ROWS = 20_000


@pytest.fixture(scope="module")
def profile() -> ReferenceProfile:
    rng = np.random.default_rng(7)
    n = 2_000
    fare = rng.lognormal(3.0, 1.0, n)
    fare[rng.random(n) < 0.1] = np.nan
    # 40% exact zeros: the first bin (-inf, 0] is bounded by low = 0, so it has no width.
    parch = np.where(rng.random(n) < 0.4, 0.0, rng.uniform(1, 50, n))
    # 60 distinct rare values beyond the 50 kept categories end up in OTHER.
    common = rng.choice(["S", "C", "Q"], n, p=[0.6, 0.3, 0.1]).astype(object)
    common[rng.random(n) < 0.05] = None
    embarked = common.copy()
    rare = rng.random(n) < 0.15
    embarked[rare] = [f"port{i}" for i in rng.integers(0, 120, int(rare.sum()))]
    return build_profile(
        "titanic",
        "1",
        {
            "in_fare": fare,
            "in_parch": parch,
            "in_embarked": embarked,
            "out_probability": rng.random(n),
        },
        "test",
    )


def shares(counts: np.ndarray, missing: int) -> np.ndarray:
    values = np.append(counts, missing).astype(np.float64)
    normalised: np.ndarray = values / values.sum()
    return normalised


def test_rows_are_keyed_by_input_feature_name_only(profile: ReferenceProfile) -> None:
    sampled = sample_inputs(profile, 10)

    assert list(sampled) == ["fare", "parch", "embarked"]  # no output, no in_ prefix
    assert all(len(column) == 10 for column in sampled.values())
    assert sampled["fare"].dtype == np.float64
    assert sampled["embarked"].dtype == object


def test_numeric_bin_and_missing_shares_match_the_profile(profile: ReferenceProfile) -> None:
    distribution = profile.feature("in_fare").distribution
    fare = sample_inputs(profile, ROWS, seed=1)["fare"]

    missing = int(np.isnan(fare).sum())
    observed = shares(numeric_counts(fare, distribution.edges), missing)
    expected = shares(distribution.counts, distribution.missing)

    np.testing.assert_allclose(observed, expected, atol=0.01)
    present = fare[~np.isnan(fare)]
    assert distribution.low is not None and distribution.high is not None
    assert distribution.low <= present.min() and present.max() <= distribution.high
    # Quantiles, not the mean: a uniform draw in the open top bin stretches to the maximum.
    for q in ("0.25", "0.5", "0.75"):
        reference = distribution.quantiles[q]
        assert abs(np.quantile(present, float(q)) - reference) < 0.05 * reference


def test_a_zero_width_bin_gives_its_edge(profile: ReferenceProfile) -> None:
    distribution = profile.feature("in_parch").distribution
    parch = sample_inputs(profile, ROWS, seed=2)["parch"]

    assert distribution.low == 0.0 and distribution.edges[0] == 0.0
    zero_share = distribution.counts[0] / distribution.total
    assert abs(np.mean(parch == 0.0) - zero_share) < 0.01
    assert np.all(parch[parch != 0.0] > 0.0)  # the other bins lie strictly above the edge


def test_categories_keep_their_shares_without_other(profile: ReferenceProfile) -> None:
    distribution = profile.feature("in_embarked").distribution
    embarked = sample_inputs(profile, ROWS, seed=3)["embarked"]

    assert OTHER in distribution.categories and distribution.counts[-1] > 0
    named = [c for c in distribution.categories if c != OTHER]
    counts = np.array([int(np.sum(embarked == name)) for name in named])
    missing = int(sum(value is None for value in embarked))
    assert counts.sum() + missing == ROWS  # nothing else: OTHER is never drawn

    kept = np.array([c != OTHER for c in distribution.categories])
    expected = shares(distribution.counts[kept], distribution.missing)  # OTHER's mass dropped
    np.testing.assert_allclose(shares(counts, missing), expected, atol=0.01)
    assert all(isinstance(value, str) for value in embarked if value is not None)


def test_the_same_seed_gives_the_same_rows(profile: ReferenceProfile) -> None:
    first, again = sample_inputs(profile, 50, seed=4), sample_inputs(profile, 50, seed=4)
    other = sample_inputs(profile, 50, seed=5)

    for name in first:
        np.testing.assert_array_equal(first[name], again[name])
    assert not np.array_equal(first["fare"], other["fare"], equal_nan=True)


def test_a_feature_without_values_cannot_be_sampled(profile: ReferenceProfile) -> None:
    distribution = profile.feature("in_fare").distribution
    empty = distribution.with_counts(np.zeros_like(distribution.counts), 0)
    feature = profile.features[0]
    hollow = ReferenceProfile(
        **{
            **profile.__dict__,
            "features": (type(feature)(feature.name, feature.column, "input", empty),),
        }
    )

    with pytest.raises(ValueError, match="no values to sample"):
        sample_inputs(hollow, 5)

"""The PCA reconstruction-error test: quiet on data like the reference, loud when the
features' joint distribution changes even though each marginal stays the same."""

from __future__ import annotations

import json

import numpy as np
import pytest

from drift.multivariate import (
    PcaDetector,
    encode,
    fit_pca_detector,
    pca_drift,
    reconstruction_errors,
)
from drift.verdict import TestSettings

CITIES = ("paris", "rome", "oslo")


def correlated(rows: int, seed: int, correlation: float = 0.8) -> dict[str, np.ndarray]:
    """Two correlated normals, an independent one and a city tied to the third."""
    rng = np.random.default_rng(seed)
    a = rng.normal(size=rows)
    b = correlation * a + np.sqrt(1 - correlation**2) * rng.normal(size=rows)
    c = rng.normal(loc=5.0, scale=2.0, size=rows)
    city = np.where(c > 6, "paris", np.where(c > 4, "rome", "oslo")).astype(object)
    return {"in_a": a, "in_b": b, "in_c": c, "in_city": city}


def fit(columns: dict[str, np.ndarray]) -> PcaDetector:
    return fit_pca_detector(columns, ["in_a", "in_b", "in_c"], {"in_city": CITIES})


@pytest.fixture(scope="module")
def detector() -> PcaDetector:
    return fit(correlated(4000, seed=1))


def test_data_like_the_reference_scores_about_one_and_rarely_drifts(detector):
    results = [
        pca_drift(detector, correlated(500, seed=100 + i), 1, TestSettings()) for i in range(20)
    ]

    scores = [r.score for r in results]
    assert all(0.8 < s < 1.2 for s in scores), scores
    assert sum(r.drifted for r in results) <= 2
    assert results[0].statistic == "pca_reconstruction"
    assert results[0].threshold == pytest.approx(0.05)


def test_held_out_error_is_not_the_optimistic_in_sample_error(detector):
    # The reference's error is measured on rows the PCA was not fitted on: fresh data
    # from the same distribution reconstructs about as well (score ~1, checked above),
    # and the held-out figure is what fresh data gives, within sampling noise.
    fresh = reconstruction_errors(detector, correlated(20_000, seed=7))
    assert fresh.mean() == pytest.approx(detector.error_mean, rel=0.1)
    assert fresh.std() == pytest.approx(detector.error_std, rel=0.2)


def test_a_flipped_correlation_drifts_while_the_marginals_stay_the_same(detector):
    flipped = correlated(500, seed=3, correlation=-0.8)
    same = correlated(500, seed=3)

    for name in ("in_a", "in_b"):  # each feature alone looks like the reference
        assert flipped[name].mean() == pytest.approx(same[name].mean(), abs=0.15)
        assert flipped[name].std() == pytest.approx(same[name].std(), rel=0.1)
    result = pca_drift(detector, flipped, 5, TestSettings())

    assert result.drifted
    assert result.score > 2
    assert result.p_value is not None and result.p_value < 1e-6
    assert result.threshold == pytest.approx(0.01)  # alpha / n_tests


def test_encode_standardises_numbers_and_one_hot_encodes_categories(detector):
    columns = {
        "in_a": np.array([detector.center[0], np.nan]),
        "in_b": np.array([detector.center[1] + detector.scale[1], 0.0]),
        "in_c": np.array([detector.center[2], detector.center[2]]),
        "in_city": np.array(["rome", "lisbon"], dtype=object),
    }

    encoded = encode(detector, columns)

    assert encoded.shape == (2, 3 + len(CITIES))
    assert encoded[0, :3] == pytest.approx([0.0, 1.0, 0.0])
    assert encoded[1, 0] == 0.0  # NaN: the reference mean, after standardising
    assert list(encoded[0, 3:]) == [0.0, 1.0, 0.0]  # rome
    assert list(encoded[1, 3:]) == [0.0, 0.0, 0.0]  # a city the reference never saw


def test_detector_round_trips_through_json(detector):
    restored = PcaDetector.from_dict(json.loads(json.dumps(detector.to_dict())))

    sample = correlated(300, seed=9)
    assert restored.to_dict() == detector.to_dict()
    np.testing.assert_allclose(
        reconstruction_errors(restored, sample), reconstruction_errors(detector, sample)
    )


def test_keeps_components_for_the_variance_asked_but_never_all(detector):
    assert 1 <= detector.components.shape[0] < detector.components.shape[1]
    np.testing.assert_allclose(
        detector.components @ detector.components.T,
        np.eye(detector.components.shape[0]),
        atol=1e-9,
    )
    # Fitting is seeded: the same rows give the same detector.
    assert fit(correlated(4000, seed=1)).to_dict() == detector.to_dict()


def classes_and_ages(rows: int, seed: int) -> dict[str, np.ndarray]:
    """One number and one category with no missing values: its one-hot block sums to 1,
    so the encoded rows have one dimension fewer of rank than of columns."""
    rng = np.random.default_rng(seed)
    pclass = rng.choice(np.array(["1", "2", "3"], dtype=object), rows)
    return {"in_pclass": pclass, "in_age": rng.normal(30, 10, rows)}


def fit_classes_and_ages(columns: dict[str, np.ndarray]) -> PcaDetector:
    return fit_pca_detector(columns, ["in_age"], {"in_pclass": ("1", "2", "3")})


def test_collinear_one_hot_columns_still_leave_a_component_with_variance_out():
    detector = fit_classes_and_ages(classes_and_ages(5000, seed=0))

    # 4 encoded columns of rank 3: at most 2 components, so the held-out error is real
    # variance, not rounding noise (~1e-31 with 3 kept).
    assert detector.components.shape == (2, 4)
    assert detector.error_mean > 0.1
    assert detector.error_mean > 10 * detector.error_floor


@pytest.mark.parametrize("odd_value", [None, "4"], ids=["null", "unseen"])
def test_one_null_or_unseen_category_among_2000_rows_is_not_significant(odd_value):
    detector = fit_classes_and_ages(classes_and_ages(5000, seed=0))
    window = classes_and_ages(2000, seed=1)
    window["in_pclass"][0] = odd_value

    result = pca_drift(detector, window, 5, TestSettings())

    assert not result.drifted
    assert 0.8 < result.score < 1.2


def test_a_detector_whose_held_out_error_is_zero_cannot_score_astronomically():
    # As profiles written before the rank cap are: every non-null component kept, a
    # held-out error of rounding noise, and no total variance recorded.
    fitted = fit_classes_and_ages(classes_and_ages(5000, seed=0)).to_dict()
    del fitted["total_variance"]
    null = np.array([0.0, 1.0, 1.0, 1.0]) / np.sqrt(3)  # the one-hot block's sum
    every_other = np.linalg.svd(np.eye(4) - np.outer(null, null))[2][:3]
    legacy = PcaDetector.from_dict(
        {**fitted, "components": every_other.tolist(), "error_mean": 3e-31, "error_std": 2e-31}
    )
    assert reconstruction_errors(legacy, classes_and_ages(100, seed=3)).max() < 1e-20
    odd = classes_and_ages(2000, seed=1)
    odd["in_pclass"][0] = None
    all_null = classes_and_ages(2000, seed=2)
    all_null["in_pclass"][:] = None

    one_row = pca_drift(legacy, odd, 5, TestSettings())
    every_row = pca_drift(legacy, all_null, 5, TestSettings())

    assert legacy.error_floor == pytest.approx(0.01 * (1 + 3 * (1 / 3) * (2 / 3)), rel=0.05)
    assert not one_row.drifted and one_row.score < 2
    assert every_row.drifted and every_row.score < 1e3


def test_inputs_that_vary_along_one_direction_get_no_detector():
    a = np.random.default_rng(0).normal(size=1000)

    with pytest.raises(ValueError, match="one direction"):
        fit_pca_detector({"in_a": a, "in_b": 2 * a + 1}, ["in_a", "in_b"], {})


def test_too_few_reference_rows_is_refused():
    with pytest.raises(ValueError, match="at least 200"):
        fit(correlated(150, seed=0))

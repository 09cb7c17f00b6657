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


def test_too_few_reference_rows_is_refused():
    with pytest.raises(ValueError, match="at least 200"):
        fit(correlated(150, seed=0))

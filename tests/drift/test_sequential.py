"""Concept drift from labels: Page-Hinkley on the error stream, and the performance test."""

from __future__ import annotations

import math

import numpy as np
import pytest

from drift.sequential import PageHinkley, first_alarm, performance_drift
from drift.verdict import TestSettings


def error_stream(rng: np.random.Generator, *rates_and_lengths: tuple[float, int]) -> np.ndarray:
    """0/1 errors in time order: each (rate, length) segment after the previous one."""
    return np.concatenate([rng.random(n) < rate for rate, n in rates_and_lengths]).astype(float)


def summary(errors: np.ndarray) -> tuple[int, float, float]:
    return errors.size, float(errors.mean()), float(errors.std())


def test_page_hinkley_alarms_soon_after_the_error_rate_jumps():
    errors = error_stream(np.random.default_rng(3), (0.2, 2_000), (0.6, 2_000))
    alarm = first_alarm(errors)
    assert alarm is not None and 2_000 < alarm <= 2_300


def test_page_hinkley_stays_quiet_on_a_stable_stream():
    errors = error_stream(np.random.default_rng(4), (0.2, 5_000))
    assert first_alarm(errors) is None


def test_page_hinkley_ignores_a_falling_error_rate():
    errors = error_stream(np.random.default_rng(5), (0.6, 1_000), (0.1, 3_000))
    assert first_alarm(errors) is None


def test_no_alarm_before_min_instances_and_a_fresh_start_after_one():
    detector = PageHinkley(threshold=5.0, min_instances=30)
    alarms = [detector.update(x) for x in [0.0] * 10 + [10.0] * 20]
    assert alarms == [False] * 29 + [True]  # the sum crossed 5 at value 11; alarms wait for 30
    # The alarm is forgotten: the same rise, seen again, waits for 30 new values.
    assert not any(detector.update(x) for x in [0.0] * 10 + [10.0] * 19)
    assert detector.update(10.0)


def test_first_alarm_uses_the_detector_it_is_given():
    errors = error_stream(np.random.default_rng(3), (0.2, 2_000), (0.6, 2_000))
    default = first_alarm(errors)
    eager = first_alarm(errors, PageHinkley(threshold=10.0))
    assert eager is not None and default is not None and eager < default


def test_performance_drift_flags_flipped_labels():
    rng = np.random.default_rng(6)
    truth = rng.random(8_000) < 0.5
    predicted = np.where(rng.random(8_000) < 0.9, truth, ~truth)  # a 90 % accurate model
    reference_errors = (predicted[:5_000] != truth[:5_000]).astype(float)
    # Later, the world changes: 30 % of the labels now mean the opposite.
    flipped = np.where(rng.random(3_000) < 0.3, ~truth[5_000:], truth[5_000:])
    flipped_errors = (predicted[5_000:] != flipped).astype(float)
    unchanged_errors = (predicted[5_000:] != truth[5_000:]).astype(float)

    settings = TestSettings(alpha=0.05)
    drifted = performance_drift(*summary(reference_errors), *summary(flipped_errors), 4, settings)
    assert drifted.statistic == "performance" and drifted.drifted
    assert drifted.score == pytest.approx(0.24, abs=0.03)
    assert drifted.p_value is not None and drifted.p_value < 1e-12
    assert drifted.threshold == pytest.approx(0.0125)

    steady = performance_drift(*summary(reference_errors), *summary(unchanged_errors), 4, settings)
    assert not steady.drifted and steady.p_value is not None and steady.p_value > 0.0125


def test_performance_drift_is_one_sided_and_matches_the_normal_tail():
    settings = TestSettings()
    better = performance_drift(1_000, 0.3, 0.46, 1_000, 0.2, 0.4, 1, settings)
    assert not better.drifted and better.p_value is not None and better.p_value > 0.99
    # z = 0.05 / sqrt(0.5^2/400 + 0.5^2/400) = 1.414...: p = 0.0786
    close = performance_drift(400, 0.5, 0.5, 400, 0.55, 0.5, 1, settings)
    assert close.p_value == pytest.approx(0.07865, abs=1e-4) and not close.drifted


def test_performance_drift_edge_cases():
    settings = TestSettings()
    no_labels = performance_drift(1_000, 0.1, 0.3, 0, 0.0, 0.0, 1, settings)
    assert math.isnan(no_labels.score) and not no_labels.drifted
    perfect_then_wrong = performance_drift(500, 0.0, 0.0, 50, 1.0, 0.0, 1, settings)
    assert perfect_then_wrong.drifted and perfect_then_wrong.p_value == 0.0
    with pytest.raises(ValueError, match="n_tests"):
        performance_drift(1, 0.0, 0.0, 1, 0.0, 0.0, 0, settings)

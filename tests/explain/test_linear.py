"""The linear fast path: exact, equal to Kernel SHAP on linear models, and detected by probing."""

from __future__ import annotations

import numpy as np
import pytest

from explain.frame import Frame, as_frame, column_means
from explain.kernel_shap import kernel_shap
from explain.linear import fit_linear, is_linear, linear_attributions, linear_explain

COEFFICIENTS = {"fare": 0.5, "age": -2.0, "height": 3.0, "noise": 0.0}
INTERCEPT = 1.25


def linear_model(frame: Frame) -> np.ndarray:
    terms = [weight * frame[name] for name, weight in COEFFICIENTS.items()]
    return np.asarray(INTERCEPT + np.sum(terms, axis=0), dtype=float)


def numbers(n_rows: int, seed: int) -> Frame:
    rng = np.random.default_rng(seed)
    return as_frame({name: rng.normal(10, 3, size=n_rows) for name in COEFFICIENTS})


def expected_values(rows: Frame, background: Frame) -> np.ndarray:
    return np.column_stack(
        [w * (rows[name] - background[name].mean()) for name, w in COEFFICIENTS.items()]
    )


def test_kernel_shap_and_the_fast_path_both_give_w_times_x_minus_the_background_mean():
    rows, background = numbers(20, seed=1), numbers(40, seed=2)
    shap = kernel_shap(linear_model, rows, background)
    fast = linear_attributions(COEFFICIENTS, INTERCEPT, rows, column_means(background))
    assert shap.detail["exact"]
    np.testing.assert_allclose(shap.values, expected_values(rows, background), atol=1e-6)
    np.testing.assert_allclose(fast.values, shap.values, atol=1e-9)
    assert fast.base_value == pytest.approx(shap.base_value)
    np.testing.assert_allclose(fast.predictions, linear_model(rows))
    assert fast.additivity_error() < 1e-9 and fast.method == "linear"


def test_is_linear_recovers_the_coefficients_of_a_linear_model():
    rows, background = numbers(10, seed=3), numbers(30, seed=4)
    coefficients = is_linear(linear_model, rows, background)
    assert coefficients is not None
    assert coefficients == pytest.approx(COEFFICIENTS, abs=1e-9)
    fit = fit_linear(linear_model, rows, background)
    assert fit is not None and fit[1] == pytest.approx(INTERCEPT)


def test_is_linear_tolerates_float32_rounding_and_rejects_curvature():
    rows, background = numbers(10, seed=5), numbers(30, seed=6)

    def float32_model(frame: Frame) -> np.ndarray:
        return linear_model(frame).astype(np.float32).astype(np.float64)

    def slightly_curved(frame: Frame) -> np.ndarray:
        return linear_model(frame) + 0.05 * frame["age"] ** 2

    def logistic(frame: Frame) -> np.ndarray:
        return 1 / (1 + np.exp(-(frame["fare"] - 10) / 3))

    assert is_linear(float32_model, rows, background) is not None
    assert is_linear(slightly_curved, rows, background) is None
    assert is_linear(logistic, rows, background) is None


def test_a_categorical_feature_or_a_missing_number_means_no_fast_path():
    rows, background = numbers(5, seed=7), numbers(10, seed=8)
    with_text = {**rows, "sex": np.array(["m"] * 5, dtype=object)}
    assert (
        is_linear(lambda f: f["fare"], with_text, {**background, "sex": with_text["sex"]}) is None
    )
    with_gap = {**rows, "age": np.where(np.arange(5) == 2, np.nan, rows["age"])}
    assert linear_explain(linear_model, with_gap, background) is None


def test_linear_explain_probes_once_then_explains_exactly():
    rows, background = numbers(15, seed=9), numbers(30, seed=10)
    calls = []

    def counted(frame: Frame) -> np.ndarray:
        calls.append(len(frame["fare"]))
        return linear_model(frame)

    result = linear_explain(counted, rows, background)
    assert result is not None and len(calls) == 1
    np.testing.assert_allclose(result.values, expected_values(rows, background), atol=1e-9)
    assert result.additivity_error() < 1e-9


def test_linear_attributions_refuse_mismatched_coefficients():
    rows, means = numbers(2, seed=0), dict.fromkeys(COEFFICIENTS, 0.0)
    with pytest.raises(ValueError, match="no coefficient for feature 'noise'"):
        linear_attributions({k: v for k, v in COEFFICIENTS.items() if k != "noise"}, 0, rows, means)
    with pytest.raises(ValueError, match=r"do not have: \['port'\]"):
        linear_attributions({**COEFFICIENTS, "port": 1.0}, 0, rows, means)
    with pytest.raises(ValueError, match="'sex' is not numeric"):
        linear_attributions({"sex": 1.0}, 0, {"sex": np.array(["m"], dtype=object)}, {"sex": 0.0})

"""Kernel SHAP: exact Shapley values when coalitions are enumerated, additivity always,
the truth recovered on functions whose dependence is known, and predict calls batched."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from explain.frame import Frame, as_frame, frame_rows
from explain.kernel_shap import kernel_shap, min_samples, shapley_coalitions

CATEGORY_EFFECT = 4.0


def synthetic(frame: Frame) -> np.ndarray:
    """3*x1 + 2*x2^2 + 4*[cat == "b"] + 0*x4: additive, so each feature's true Shapley
    value is its own term minus that term's background mean."""
    is_b = np.array([value == "b" for value in frame["cat"]], dtype=np.float64)
    total = 3 * frame["x1"] + 2 * frame["x2"] ** 2 + CATEGORY_EFFECT * is_b + 0 * frame["x4"]
    return np.asarray(total, dtype=float)


def synthetic_frame(n_rows: int, seed: int) -> Frame:
    rng = np.random.default_rng(seed)
    return as_frame(
        {
            "x1": rng.normal(size=n_rows),
            "x2": rng.normal(size=n_rows),
            "cat": rng.choice(["a", "b", "c"], size=n_rows),
            "x4": rng.normal(size=n_rows),
        }
    )


def true_synthetic_shap(rows: Frame, background: Frame) -> np.ndarray:
    def centred(values: np.ndarray, reference: np.ndarray) -> np.ndarray:
        return np.asarray(values - reference.mean(), dtype=float)

    is_b = np.array([v == "b" for v in rows["cat"]], float)
    bg_is_b = np.array([v == "b" for v in background["cat"]], float)
    return np.column_stack(
        [
            centred(3 * rows["x1"], 3 * background["x1"]),
            centred(2 * rows["x2"] ** 2, 2 * background["x2"] ** 2),
            centred(CATEGORY_EFFECT * is_b, CATEGORY_EFFECT * bg_is_b),
            np.zeros(frame_rows(rows)),
        ]
    )


def brute_force_shapley(predict, row: Frame, background: Frame) -> np.ndarray:
    """The Shapley formula itself, coalition by coalition (the test's independent oracle)."""
    names = list(row)
    n_background, n_features = frame_rows(background), len(names)

    def value(present: set[str]) -> float:
        mixed = {
            name: (np.repeat(row[name], n_background) if name in present else background[name])
            for name in names
        }
        return float(np.mean(predict(mixed)))

    phi = np.zeros(n_features)
    for j, name in enumerate(names):
        others = [other for other in names if other != name]
        for size in range(n_features):
            weight = (
                math.factorial(size)
                * math.factorial(n_features - size - 1)
                / math.factorial(n_features)
            )
            for subset in itertools.combinations(others, size):
                phi[j] += weight * (value({*subset, name}) - value(set(subset)))
    return phi


def test_enumerated_coalitions_give_the_exact_shapley_values_of_an_interacting_model():
    def model(frame: Frame) -> np.ndarray:
        bonus = np.array([v == "b" for v in frame["cat"]], float)
        return np.asarray(frame["x1"] * frame["x2"] + np.sin(frame["x4"]) * bonus + frame["x1"])

    rows, background = synthetic_frame(3, seed=1), synthetic_frame(12, seed=2)
    result = kernel_shap(model, rows, background)
    assert result.detail["exact"] and result.detail["coalitions"] == 2**4 - 2
    for i in range(3):
        expected = brute_force_shapley(
            model, {k: v[i : i + 1] for k, v in rows.items()}, background
        )
        np.testing.assert_allclose(result.values[i], expected, atol=1e-9)


def test_synthetic_function_ranking_magnitudes_and_additivity():
    rows, background = synthetic_frame(40, seed=3), synthetic_frame(30, seed=4)
    result = kernel_shap(synthetic, rows, background)
    assert result.features == ("x1", "x2", "cat", "x4")
    assert result.additivity_error() < 1e-6
    assert result.base_value == pytest.approx(synthetic(background).mean())
    np.testing.assert_allclose(result.predictions, synthetic(rows))
    np.testing.assert_allclose(result.values, true_synthetic_shap(rows, background), atol=1e-6)
    ranking = result.global_importance().ranking()
    assert ranking[0] in ("x1", "x2") and ranking[-1] == "x4"
    assert np.abs(result.values[:, 3]).max() < 1e-9


def fourteen_features(n_rows: int, seed: int) -> Frame:
    rng = np.random.default_rng(seed)
    return as_frame({f"x{i}": rng.normal(size=n_rows) for i in range(14)})


def test_sampled_coalitions_keep_additivity_exact_and_null_features_near_zero():
    def model(frame: Frame) -> np.ndarray:
        # x0..x3 matter (x2 and x3 only together); x4..x13 are ignored.
        return np.asarray(3 * frame["x0"] + 2 * frame["x1"] ** 2 + 1.5 * frame["x2"] * frame["x3"])

    rows, background = fourteen_features(8, seed=5), fourteen_features(25, seed=6)
    result = kernel_shap(model, rows, background, n_samples=1000, seed=0)
    assert not result.detail["exact"]
    assert result.detail["coalitions"] <= 1000
    assert result.additivity_error() < 1e-9
    mean_abs = np.abs(result.values).mean(axis=0)
    assert mean_abs[4:].max() < 0.05 * mean_abs[:4].min()
    # x0 enters additively: its Shapley value is known even with interactions elsewhere.
    expected_x0 = 3 * (rows["x0"] - background["x0"].mean())
    np.testing.assert_allclose(result.values[:, 0], expected_x0, atol=0.05)


def test_sampled_coalitions_approach_the_exact_values_of_an_interacting_model():
    def model(frame: Frame) -> np.ndarray:
        return np.asarray(
            2 * frame["x0"]
            + frame["x1"] * frame["x2"]
            + np.sin(2 * frame["x3"]) * frame["x4"]
            + 0.5 * frame["x5"] ** 2
            + frame["x6"] * frame["x7"] * frame["x8"]
        )

    names = [f"x{i}" for i in range(12)]
    rows = {name: column for name, column in fourteen_features(6, seed=11).items() if name in names}
    background = {name: column for name, column in fourteen_features(10, seed=12).items()
                  if name in names}  # fmt: skip
    exact = kernel_shap(model, rows, background, n_samples=2**12 - 2)
    sampled = kernel_shap(model, rows, background, n_samples=600, seed=0)
    assert exact.detail["exact"] and not sampled.detail["exact"]
    error = np.abs(sampled.values - exact.values)
    # About 2% of the largest attribution (2.6) at worst, a third of that on average.
    assert error.max() < 0.05 and error.mean() < 0.015


def test_sampled_additive_model_is_recovered_exactly():
    weights = np.arange(14, dtype=float) - 6

    def model(frame: Frame) -> np.ndarray:
        return np.asarray(np.sum([w * frame[f"x{i}"] for i, w in enumerate(weights)], axis=0))

    rows, background = fourteen_features(5, seed=7), fourteen_features(20, seed=8)
    result = kernel_shap(model, rows, background, n_samples=300, seed=1)
    means = np.array([background[f"x{i}"].mean() for i in range(14)])
    truth = weights * (np.column_stack([rows[f"x{i}"] for i in range(14)]) - means)
    np.testing.assert_allclose(result.values, truth, atol=1e-9)


def test_seed_fixes_the_sampled_result_and_chunking_does_not_change_it():
    def model(frame: Frame) -> np.ndarray:
        return np.asarray(frame["x0"] * frame["x1"] + np.tanh(frame["x2"] + frame["x5"]))

    rows, background = fourteen_features(4, seed=9), fourteen_features(10, seed=10)
    one_call = kernel_shap(model, rows, background, n_samples=200, seed=3)
    chunked = kernel_shap(model, rows, background, n_samples=200, seed=3, max_batch_rows=700)
    other_seed = kernel_shap(model, rows, background, n_samples=200, seed=4)
    assert one_call.detail["predict_calls"] == 1
    expected_rows = 10 + 4 + 4 * one_call.detail["coalitions"] * 10
    assert one_call.detail["predict_rows"] == expected_rows == chunked.detail["predict_rows"]
    assert chunked.detail["predict_calls"] > 1
    np.testing.assert_allclose(chunked.values, one_call.values, atol=1e-12)
    assert not np.allclose(other_seed.values, one_call.values)


def test_the_explained_column_of_a_multi_output_model_is_chosen_by_output_index():
    def two_outputs(frame: Frame) -> np.ndarray:
        return np.column_stack([frame["x1"], 5 * frame["x4"]])

    rows, background = synthetic_frame(3, seed=11), synthetic_frame(10, seed=12)
    second = kernel_shap(two_outputs, rows, background, output_index=1)
    assert np.abs(second.values[:, :3]).max() < 1e-12
    np.testing.assert_allclose(second.values[:, 3], 5 * (rows["x4"] - background["x4"].mean()))
    with pytest.raises(ValueError, match="pass output_index"):
        kernel_shap(two_outputs, rows, background)


def test_edge_cases_one_feature_and_no_rows():
    single = kernel_shap(lambda f: 2 * f["a"], {"a": np.array([1.0, 3.0])}, {"a": np.zeros(4)})
    np.testing.assert_allclose(single.values[:, 0], [2.0, 6.0])
    empty = kernel_shap(synthetic, synthetic_frame(0, seed=0), synthetic_frame(5, seed=1))
    assert empty.values.shape == (0, 4) and empty.additivity_error() == 0.0


def test_bad_inputs_are_refused_with_what_to_do():
    rows = synthetic_frame(2, seed=0)
    with pytest.raises(ValueError, match=r"background does not match.*missing \['x4'\]"):
        kernel_shap(synthetic, rows, {k: v for k, v in rows.items() if k != "x4"})
    with pytest.raises(ValueError, match="background is empty"):
        kernel_shap(synthetic, rows, synthetic_frame(0, seed=0))
    with pytest.raises(ValueError, match="object in the background"):
        kernel_shap(synthetic, rows, {**rows, "x1": rows["x1"].astype(object)})
    with pytest.raises(ValueError, match="needs at least 28"):
        shapley_coalitions(14, 20, np.random.default_rng(0))


@pytest.mark.parametrize("n_features", [1, 2, 3, 4, 6, 14])
def test_min_samples_is_the_fewest_coalitions_that_work(n_features: int) -> None:
    rng = np.random.default_rng(0)
    fewest = min_samples(n_features)
    assert len(shapley_coalitions(n_features, fewest, rng).masks) <= fewest
    if n_features > 1:
        with pytest.raises(ValueError, match="too few"):
            shapley_coalitions(n_features, fewest - 1, rng)


def test_coalition_weights_follow_the_shapley_kernel_when_enumerated():
    coalitions = shapley_coalitions(5, 2048, np.random.default_rng(0))
    sizes = coalitions.masks.sum(axis=1)
    per_size = {int(s): coalitions.weights[sizes == s] for s in np.unique(sizes)}
    # Within a size all weights are equal; sizes 1 and 4 weigh (M-1)/(C(M,s) s (M-s)).
    assert all(np.allclose(w, w[0]) for w in per_size.values())
    ratio = per_size[1][0] / per_size[2][0]
    assert ratio == pytest.approx((4 / (5 * 1 * 4)) / (4 / (10 * 2 * 3)))

"""Permutation importance: informative features matter, null ones do not, seeds repeat."""

from __future__ import annotations

import numpy as np
import pytest

from explain.frame import Frame, as_frame
from explain.permutation import permutation_importance


def classification_data(n_rows: int = 400, seed: int = 0) -> tuple[Frame, np.ndarray]:
    rng = np.random.default_rng(seed)
    frame = as_frame(
        {
            "signal": rng.normal(size=n_rows),
            "weak": rng.normal(size=n_rows),
            "null": rng.normal(size=n_rows),
            "colour": rng.choice(["red", "blue"], size=n_rows),
        }
    )
    labels = (frame["signal"] + 0.3 * frame["weak"] > 0).astype(np.int64)
    return frame, labels


def probability(frame: Frame) -> np.ndarray:
    """P(label = 1): uses signal and weak; null and colour are ignored."""
    return 1 / (1 + np.exp(-4 * (frame["signal"] + 0.3 * frame["weak"])))


def two_class(frame: Frame) -> np.ndarray:
    positive = probability(frame)
    return np.column_stack([1 - positive, positive])


def test_with_labels_the_informative_feature_loses_the_most_accuracy_and_null_ones_none():
    rows, labels = classification_data()
    result = permutation_importance(probability, rows, labels=labels, metric="accuracy")
    assert result.scoring == "accuracy" and result.baseline_score == 1.0
    assert result.ranking()[0] == "signal"
    assert result.importance[0] > 0.3
    assert result.as_dict()["null"] == 0.0 and result.as_dict()["colour"] == 0.0
    assert result.as_dict()["weak"] > 0


def test_without_labels_importance_is_the_change_in_prediction():
    rows, _ = classification_data()
    result = permutation_importance(probability, rows, repeats=3)
    assert result.scoring == "prediction_change" and result.baseline_score is None
    assert result.ranking()[:2] == ["signal", "weak"]
    assert result.as_dict()["null"] == 0.0
    assert (result.std >= 0).all()


def test_the_seed_fixes_the_result():
    rows, labels = classification_data(n_rows=100)
    first = permutation_importance(probability, rows, labels=labels, seed=7)
    again = permutation_importance(probability, rows, labels=labels, seed=7)
    other = permutation_importance(probability, rows, labels=labels, seed=8)
    np.testing.assert_array_equal(first.importance, again.importance)
    np.testing.assert_array_equal(first.std, again.std)
    assert not np.array_equal(first.importance, other.importance)


def test_class_probability_outputs_score_by_argmax_accuracy_and_log_loss():
    rows, labels = classification_data(n_rows=200, seed=1)
    accuracy = permutation_importance(two_class, rows, labels=labels, metric="accuracy")
    log_loss = permutation_importance(two_class, rows, labels=labels, metric="log_loss")
    assert accuracy.baseline_score == 1.0 and accuracy.ranking()[0] == "signal"
    # Shuffling raises the loss: importance is the rise, so positive for what matters.
    assert log_loss.baseline_score is not None and log_loss.baseline_score > 0
    assert log_loss.ranking()[0] == "signal" and log_loss.as_dict()["signal"] > 1.0
    assert log_loss.as_dict()["null"] == pytest.approx(0.0, abs=1e-12)


def test_regression_labels_default_to_negative_mean_absolute_error():
    rows, _ = classification_data(n_rows=200, seed=2)
    target = 5 * rows["signal"]
    result = permutation_importance(lambda f: 5 * f["signal"], rows, labels=target)
    assert result.scoring == "neg_mae" and result.baseline_score == 0.0
    assert result.ranking()[0] == "signal" and result.as_dict()["weak"] == 0.0


def test_all_shuffles_go_in_one_predict_call_unless_chunked():
    rows, labels = classification_data(n_rows=50)
    calls: list[int] = []

    def counted(frame: Frame) -> np.ndarray:
        calls.append(len(frame["signal"]))
        return probability(frame)

    whole = permutation_importance(counted, rows, labels=labels, repeats=2)
    assert calls == [50 * (1 + 4 * 2)]
    calls.clear()
    chunked = permutation_importance(counted, rows, labels=labels, repeats=2, max_batch_rows=120)
    assert calls == [100, 100, 100, 100, 50]
    np.testing.assert_array_equal(chunked.importance, whole.importance)


def test_bad_requests_say_what_is_missing():
    rows, labels = classification_data(n_rows=10)
    with pytest.raises(ValueError, match="needs labels"):
        permutation_importance(probability, rows, metric="accuracy")
    with pytest.raises(ValueError, match="at least 2 rows"):
        permutation_importance(probability, {k: v[:1] for k, v in rows.items()})
    with pytest.raises(ValueError, match=r"labels have shape \(3,\)"):
        permutation_importance(probability, rows, labels=labels[:3])
    with pytest.raises(ValueError, match="0/1 labels"):
        permutation_importance(probability, rows, labels=labels + 1, metric="log_loss")

"""Attribution drift: shifts in importance shares, and rank agreement between two runs."""

from __future__ import annotations

import math

import numpy as np
import pytest

from explain.attributions import Importance
from explain.drift import importance_shift, rank_correlation


def importance(values: dict[str, float]) -> Importance:
    array = np.array(list(values.values()), dtype=float)
    return Importance(
        features=tuple(values),
        importance=array,
        std=np.zeros_like(array),
        method="permutation",
        scoring="prediction_change",
        baseline_score=None,
    )


def test_a_uniform_rescaling_is_no_shift_and_no_reordering():
    before = importance({"sex": 0.4, "fare": 0.2, "age": 0.1, "port": 0.0})
    after = importance({"sex": 4.0, "fare": 2.0, "age": 1.0, "port": 0.0})
    assert importance_shift(before, after) == pytest.approx(dict.fromkeys(before.features, 0.0))
    assert rank_correlation(before, after) == pytest.approx(1.0)


def test_weight_moving_between_features_shows_as_opposite_share_changes():
    before = importance({"sex": 3.0, "fare": 1.0, "age": 0.0})
    after = importance({"sex": 1.0, "fare": 3.0, "age": 0.0})
    shift = importance_shift(before, after)
    assert shift == pytest.approx({"sex": -0.5, "fare": 0.5, "age": 0.0})
    # Ranks (1, 2, 3) against (2, 1, 3): the top two swapped, the last agreed.
    assert rank_correlation(before, after) == pytest.approx(0.5)


def test_negative_importance_counts_as_none_and_new_features_start_from_zero():
    before = importance({"sex": 1.0, "fare": -0.5})
    after = importance({"sex": 1.0, "fare": 1.0, "deck": 2.0})
    assert importance_shift(before, after) == pytest.approx(
        {"sex": 0.25 - 1.0, "fare": 0.25, "deck": 0.5}
    )


def test_rank_correlation_is_nan_when_undefined():
    assert math.isnan(rank_correlation(importance({"a": 1.0}), importance({"a": 2.0})))
    flat = importance({"a": 1.0, "b": 1.0, "c": 1.0})
    assert math.isnan(rank_correlation(flat, importance({"a": 1.0, "b": 2.0, "c": 3.0})))

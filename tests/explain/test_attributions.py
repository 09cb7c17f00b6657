"""Result values: additivity error, JSON records, rankings, shares and joining chunks."""

from __future__ import annotations

import numpy as np
import pytest

from explain.attributions import Attribution, Importance, concat_attributions


def attribution(values, predictions, base_value=1.0) -> Attribution:
    return Attribution(
        features=("fare", "sex"),
        values=np.array(values, dtype=float),
        base_value=base_value,
        predictions=np.array(predictions, dtype=float),
        method="kernel_shap",
    )


def test_additivity_error_is_the_worst_row():
    result = attribution([[0.5, 0.25], [-1.0, 0.0]], [1.75, 0.0])
    assert result.additivity_error() == pytest.approx(0.0)
    assert attribution([[0.5, 0.25], [-1.0, 0.0]], [1.75, 0.1]).additivity_error() == (
        pytest.approx(0.1)
    )


def test_records_are_json_ready_per_row():
    records = attribution([[0.5, 0.25]], [1.75]).to_records()
    assert records == [
        {"prediction": 1.75, "base_value": 1.0, "attributions": {"fare": 0.5, "sex": 0.25}}
    ]
    assert all(type(v) is float for v in records[0]["attributions"].values())


def test_shapes_are_checked():
    with pytest.raises(ValueError, match=r"expected \(1, 2\)"):
        attribution([[0.5]], [1.0])
    with pytest.raises(ValueError, match="one value per feature"):
        Importance(("a", "b"), np.zeros(3), np.zeros(2), "permutation", "accuracy", 0.9)


def test_global_importance_ranks_by_mean_absolute_attribution():
    result = attribution([[0.1, -2.0], [-0.3, 1.0]], [-0.9, 1.7])
    overall = result.global_importance()
    assert overall.ranking() == ["sex", "fare"]
    np.testing.assert_allclose(overall.importance, [0.2, 1.5])
    assert overall.scoring == "mean_abs_attribution"
    assert overall.shares() == pytest.approx({"fare": 0.2 / 1.7, "sex": 1.5 / 1.7})


def test_chunks_of_one_explanation_join_and_other_backgrounds_do_not():
    first, second = attribution([[1.0, 0.0]], [2.0]), attribution([[0.0, 1.0]], [2.0])
    joined = concat_attributions([first, second])
    assert joined.values.tolist() == [[1.0, 0.0], [0.0, 1.0]] and joined.detail["parts"] == 2
    with pytest.raises(ValueError, match="different base values"):
        concat_attributions([first, attribution([[1.0, 0.0]], [2.5], base_value=1.5)])

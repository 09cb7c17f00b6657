"""Frames: one column per original feature, validated; the predict seam's output rules."""

from __future__ import annotations

import numpy as np
import pytest

from explain.frame import (
    CountedPredict,
    as_frame,
    column_means,
    concat,
    explained_output,
    frame_rows,
    repeat_rows,
    require_features,
    sample_rows,
    take,
)


def passengers():
    return as_frame({"fare": [7.0, 9.5, 30.0], "sex": ["male", "female", None]})


def test_as_frame_makes_numbers_float64_and_text_objects_and_flattens_model_inputs():
    frame = as_frame({"age": np.array([[1], [2]], np.int32), "sex": np.array([["a"], ["b"]])})
    assert frame["age"].dtype == np.float64 and frame["age"].tolist() == [1.0, 2.0]
    assert frame["sex"].dtype == object and frame["sex"].tolist() == ["a", "b"]


def test_ragged_empty_and_matrix_frames_are_refused_with_the_reason():
    with pytest.raises(ValueError, match=r"ragged frame.*fare=2, sex=1"):
        frame_rows({"fare": np.zeros(2), "sex": np.array(["a"], dtype=object)})
    with pytest.raises(ValueError, match="no features"):
        frame_rows({})
    with pytest.raises(ValueError, match=r"shape \(2, 4\)"):
        as_frame({"features": np.zeros((2, 4))})


def test_take_concat_repeat_and_sample_move_whole_rows():
    frame = passengers()
    assert take(frame, [2, 0])["sex"].tolist() == [None, "male"]
    joined = concat([frame, take(frame, slice(0, 1))])
    assert frame_rows(joined) == 4 and joined["fare"].tolist() == [7.0, 9.5, 30.0, 7.0]
    assert repeat_rows(frame, 2)["fare"].tolist() == [7.0, 7.0, 9.5, 9.5, 30.0, 30.0]
    sampled = sample_rows(frame, 2, seed=3)
    assert frame_rows(sampled) == 2
    pairs = set(zip(frame["fare"], frame["sex"], strict=True))
    assert set(zip(sampled["fare"], sampled["sex"], strict=True)) <= pairs
    assert sample_rows(frame, 10) == frame


def test_unknown_or_missing_features_are_named():
    with pytest.raises(ValueError, match=r"missing \['sex'\], unknown \['port'\]"):
        require_features({"fare": np.zeros(1), "port": np.zeros(1)}, ["fare", "sex"], "rows")
    with pytest.raises(ValueError, match="frame 1"):
        concat([passengers(), {"fare": np.zeros(1)}])


def test_column_means_ignore_missing_numbers_and_refuse_text():
    assert column_means({"age": np.array([1.0, np.nan, 3.0])}) == {"age": 2.0}
    with pytest.raises(ValueError, match="'sex' is not numeric"):
        column_means(passengers())


def test_explained_output_picks_a_column_or_asks_for_one():
    probabilities = np.array([[0.2, 0.8], [0.6, 0.4]])
    assert explained_output(probabilities, 2, 1).tolist() == [0.8, 0.4]
    assert explained_output(np.array([[3.0], [4.0]]), 2, None).tolist() == [3.0, 4.0]
    with pytest.raises(ValueError, match="pass output_index"):
        explained_output(probabilities, 2, None)
    with pytest.raises(ValueError, match="out of range"):
        explained_output(probabilities, 2, 2)
    with pytest.raises(ValueError, match=r"shape \(3,\) for 2 rows"):
        explained_output(np.zeros(3), 2, None)


def test_counted_predict_counts_calls_and_rows():
    counted = CountedPredict(lambda frame: frame["fare"] * 2)
    counted(passengers())
    counted(take(passengers(), [0]))
    assert (counted.calls, counted.rows) == (2, 4)

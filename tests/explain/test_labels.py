"""``explain.labels``: when labels that are not whole numbers are strays, left out."""

from __future__ import annotations

import numpy as np

from explain.labels import LabelKinds, label_kinds, why_scored


def test_whole_numbers_with_up_to_5_percent_strays_stay_class_labels() -> None:
    labels = np.array([0.0, 1.0] * 10 + [0.7, np.nan])
    assert label_kinds(labels) == LabelKinds(numeric=21, non_integer=1, example=0.7, left_out=True)
    assert label_kinds(np.array([0.0, 1.0, np.nan])) == LabelKinds(numeric=2)


def test_more_than_5_percent_make_the_labels_numbers() -> None:
    kinds = label_kinds(np.array([0.0, 1.0] * 5 + [0.5]))
    assert kinds == LabelKinds(numeric=11, non_integer=1, example=0.5, left_out=False)
    assert why_scored("neg_mae", kinds, 10) == (
        "1 of 11 numeric labels are not whole numbers (such as 0.5), more than the 5% left "
        "out as strays"
    )
    assert why_scored("prediction_change", kinds, 10) == (
        "fewer than min_rows (10) rows of the window have a usable numeric label"
    )

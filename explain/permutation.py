"""Permutation importance over original input features, for any model behind a PredictFn.

Shuffling one feature's column across the rows breaks its link with the target and with
the prediction while keeping its distribution. With feedback labels the importance is the
drop in the model's metric (``accuracy``, ``neg_mae``, or the rise in ``log_loss``) when
the feature is shuffled; without labels it is the mean absolute change in the prediction
(``prediction_change``), which says how much the model uses the feature, not whether that
helps. Every (feature, repeat) shuffle is predicted in as few calls as ``max_batch_rows``
allows, the unshuffled rows riding along in the first.

Metrics read the prediction as follows. ``accuracy``: ``[n, k]`` outputs are class scores
(the predicted class is the argmax; labels are class indices); ``[n]`` outputs are a
positive-class probability thresholded at 0.5 when the labels are 0/1, else a predicted
class index (rounded). ``log_loss``: ``[n, k]`` class probabilities, or ``[n]`` the
positive-class probability with 0/1 labels. ``neg_mae``: ``[n]`` regression outputs.
``output_index`` reduces ``[n, k]`` to ``[n]`` first; without it, ``prediction_change`` of
``[n, k]`` outputs averages the absolute change over rows and columns.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

import numpy as np

from explain.attributions import Importance
from explain.frame import CountedPredict, Frame, PredictFn, concat, frame_rows

Metric = Literal["accuracy", "neg_mae", "log_loss"]

#: Rows per predict call above which the shuffled frames are sent in chunks.
MAX_BATCH_ROWS = 200_000
_PROBABILITY_FLOOR = 1e-15


def permutation_importance(
    predict: PredictFn,
    rows: Frame,
    *,
    labels: np.ndarray | None = None,
    metric: Metric | None = None,
    repeats: int = 5,
    seed: int = 0,
    output_index: int | None = None,
    max_batch_rows: int = MAX_BATCH_ROWS,
) -> Importance:
    """Importance of each feature of ``rows`` (mean and std over ``repeats`` shuffles).

    With ``labels`` and no ``metric``, integer labels are scored by ``accuracy`` and others
    by ``neg_mae``. A ``metric`` without ``labels`` is an error.
    """
    features = tuple(rows)
    n_rows = frame_rows(rows)
    if n_rows < 2:
        raise ValueError("permutation importance needs at least 2 rows to shuffle")
    if repeats < 1:
        raise ValueError(f"repeats must be at least 1, not {repeats}")
    if labels is None and metric is not None:
        raise ValueError(f"metric '{metric}' needs labels (feedback) to score against")
    rng = np.random.default_rng(seed)
    shuffled = [
        {**rows, name: rows[name][rng.permutation(n_rows)]}
        for _ in range(repeats)
        for name in features
    ]
    counted = CountedPredict(predict)
    outputs = _predict_all(counted, [rows, *shuffled], n_rows, output_index, max_batch_rows)
    original, permuted = outputs[0], outputs[1:]
    if labels is None:
        scoring = "prediction_change"
        changes = np.array([np.mean(np.abs(output - original)) for output in permuted])
        baseline: float | None = None
    else:
        truth = np.asarray(labels)
        if truth.shape != (n_rows,):
            raise ValueError(f"labels have shape {truth.shape}; expected ({n_rows},)")
        scoring = metric or ("accuracy" if truth.dtype.kind in "biu" else "neg_mae")
        score = _scorer(scoring, truth)
        baseline = score(original)
        sign = 1.0 if scoring == "log_loss" else -1.0  # a loss rises, a score drops
        changes = np.array([sign * (score(output) - baseline) for output in permuted])
    by_repeat = changes.reshape(repeats, len(features))
    return Importance(
        features=features,
        importance=by_repeat.mean(axis=0),
        std=by_repeat.std(axis=0),
        method="permutation",
        scoring=scoring,
        baseline_score=baseline,
    )


def _predict_all(
    counted: CountedPredict,
    frames: list[Frame],
    n_rows: int,
    output_index: int | None,
    max_batch_rows: int,
) -> list[np.ndarray]:
    """Each frame's outputs (``[n]`` or ``[n, k]`` float64), frames packed into calls."""
    per_call = max(1, max_batch_rows // n_rows)
    results: list[np.ndarray] = []
    for start in range(0, len(frames), per_call):
        group = frames[start : start + per_call]
        outputs = np.asarray(counted(concat(group)), dtype=np.float64)
        expected_rows = n_rows * len(group)
        if outputs.ndim == 2 and output_index is not None:
            outputs = outputs[:, output_index]
        if outputs.ndim not in (1, 2) or outputs.shape[0] != expected_rows:
            raise ValueError(f"predict returned shape {outputs.shape} for {expected_rows} rows")
        results.extend(np.split(outputs, len(group)))
    return results


def _scorer(metric: str, labels: np.ndarray) -> Callable[[np.ndarray], float]:
    if metric == "accuracy":
        return lambda outputs: float(np.mean(_predicted_class(outputs, labels) == labels))
    if metric == "neg_mae":

        def negative_mae(outputs: np.ndarray) -> float:
            if outputs.ndim == 2 and outputs.shape[1] != 1:
                raise ValueError("neg_mae scores one output per row: pass output_index")
            return -float(np.mean(np.abs(outputs.reshape(-1) - labels)))

        return negative_mae
    if metric == "log_loss":
        return lambda outputs: _log_loss(outputs, labels)
    raise ValueError(f"unknown metric '{metric}' (expected accuracy, neg_mae or log_loss)")


def _predicted_class(outputs: np.ndarray, labels: np.ndarray) -> np.ndarray:
    classes: np.ndarray
    if outputs.ndim == 2 and outputs.shape[1] > 1:
        classes = np.argmax(outputs, axis=1)
    elif np.isin(labels, (0, 1)).all():
        classes = (outputs.reshape(-1) >= 0.5).astype(np.int64)
    else:
        classes = np.rint(outputs.reshape(-1)).astype(np.int64)
    return classes


def _log_loss(outputs: np.ndarray, labels: np.ndarray) -> float:
    if outputs.ndim == 2 and outputs.shape[1] > 1:
        chosen = outputs[np.arange(len(labels)), labels.astype(np.int64)]
    else:
        if not np.isin(labels, (0, 1)).all():
            raise ValueError("log_loss of one output per row needs 0/1 labels")
        positive = outputs.reshape(-1)
        chosen = np.where(labels == 1, positive, 1.0 - positive)
    return float(-np.mean(np.log(np.clip(chosen, _PROBABILITY_FLOOR, 1.0))))

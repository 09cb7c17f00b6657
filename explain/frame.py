"""Batches of rows in terms of a model's original input features, and the predict seam.

Every explainer in ``explain/`` works on a ``Frame``: one 1-D array per *original* input
feature (numbers as float64, categories as object arrays of ``str``/``None``), all the same
length. Explainers build new frames by mixing rows (a shuffled column, a coalition of
features taken from a background row) and hand them to a ``PredictFn``: whatever turns a
frame into the model's inputs, runs the model (any format, a whole pipeline included) and
returns the explained output. Because the mixing happens before encoding, a categorical
feature or a pipeline's preprocessing is explained as the one input the caller sent.

A ``PredictFn`` returns float64 ``[n]`` (the explained scalar, e.g. the positive-class
probability) or ``[n, k]`` (e.g. every class's probability). ``output_index`` then picks the
column to explain; a ``[n, 1]`` output needs none. ``CountedPredict`` counts calls and rows,
which are what an explanation costs.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

Frame = dict[str, np.ndarray]
PredictFn = Callable[[Frame], np.ndarray]


def as_frame(columns: Mapping[str, object]) -> Frame:
    """Normalise columns into a ``Frame``: numbers to float64, anything else to object.

    Accepts lists or arrays of shape ``[n]`` or ``[n, 1]`` (model inputs), and validates
    that every column has the same length.
    """
    frame: Frame = {}
    for name, values in columns.items():
        array = np.asarray(values)
        if array.ndim == 2 and array.shape[1] == 1:
            array = array[:, 0]
        if array.ndim != 1:
            raise ValueError(
                f"feature '{name}' has shape {array.shape}: a frame holds one value per row "
                "and feature (shape [n] or [n, 1])"
            )
        is_number = array.dtype.kind in "biuf"
        frame[name] = array.astype(np.float64 if is_number else object)
    frame_rows(frame)
    return frame


def frame_rows(frame: Mapping[str, np.ndarray]) -> int:
    """The number of rows; raises ``ValueError`` on an empty frame or ragged columns."""
    if not frame:
        raise ValueError("the frame has no features")
    lengths = {name: len(column) for name, column in frame.items()}
    if len(set(lengths.values())) != 1:
        described = ", ".join(f"{name}={length}" for name, length in lengths.items())
        raise ValueError(f"ragged frame: every feature needs the same number of rows ({described})")
    return next(iter(lengths.values()))


def require_features(frame: Mapping[str, np.ndarray], features: Sequence[str], what: str) -> None:
    """Raise ``ValueError`` unless ``frame`` has exactly ``features`` (in any order)."""
    missing = [name for name in features if name not in frame]
    unknown = [name for name in frame if name not in features]
    if missing or unknown:
        raise ValueError(
            f"{what} does not match the explained features {list(features)}: "
            f"missing {missing}, unknown {unknown}"
        )


def take(frame: Mapping[str, np.ndarray], index: np.ndarray | Sequence[int] | slice) -> Frame:
    """The rows at ``index`` (positions, a boolean mask or a slice), every feature alike."""
    frame_rows(frame)
    return {name: column[index] for name, column in frame.items()}


def concat(frames: Sequence[Mapping[str, np.ndarray]]) -> Frame:
    """Rows of ``frames`` one after the other; every frame must have the same features."""
    if not frames:
        raise ValueError("concat needs at least one frame")
    features = list(frames[0])
    for position, frame in enumerate(frames):
        frame_rows(frame)
        require_features(frame, features, f"frame {position}")
    return {name: np.concatenate([frame[name] for frame in frames]) for name in features}


def repeat_rows(frame: Mapping[str, np.ndarray], repeats: int) -> Frame:
    """Each row ``repeats`` times in a row: rows ``a, b`` become ``a, a, b, b`` for 2."""
    frame_rows(frame)
    return {name: np.repeat(column, repeats) for name, column in frame.items()}


def sample_rows(frame: Mapping[str, np.ndarray], size: int, seed: int = 0) -> Frame:
    """Up to ``size`` rows drawn without replacement (all rows, in order, when fewer):
    how a background is sampled from a reference set."""
    n_rows = frame_rows(frame)
    if n_rows <= size:
        return dict(frame)
    chosen = np.sort(np.random.default_rng(seed).choice(n_rows, size=size, replace=False))
    return take(frame, chosen)


def column_means(frame: Mapping[str, np.ndarray]) -> dict[str, float]:
    """The mean of every numeric feature, ignoring NaN (a linear model's background mean)."""
    means: dict[str, float] = {}
    for name, column in frame.items():
        if column.dtype.kind != "f":
            raise ValueError(f"feature '{name}' is not numeric: it has no mean")
        means[name] = float(np.nanmean(column))
    return means


def explained_output(outputs: np.ndarray, n_rows: int, output_index: int | None) -> np.ndarray:
    """The float64 ``[n]`` scalar explained from a predict result (see the module docstring)."""
    array = np.asarray(outputs, dtype=np.float64)
    if array.ndim == 2 and output_index is not None:
        if not -array.shape[1] <= output_index < array.shape[1]:
            raise ValueError(
                f"output_index {output_index} is out of range for {array.shape[1]} outputs"
            )
        array = array[:, output_index]
    elif array.ndim == 2 and array.shape[1] == 1:
        array = array[:, 0]
    elif array.ndim == 2:
        raise ValueError(
            f"predict returned {array.shape[1]} outputs per row: pass output_index to pick "
            "the one to explain"
        )
    elif output_index is not None and array.ndim == 1:
        raise ValueError("output_index given but predict returned one output per row")
    if array.shape != (n_rows,):
        raise ValueError(f"predict returned shape {array.shape} for {n_rows} rows")
    return array


@dataclass
class CountedPredict:
    """A ``PredictFn`` that counts what it was asked: calls and rows."""

    predict: PredictFn
    calls: int = 0
    rows: int = 0

    def __call__(self, frame: Frame) -> np.ndarray:
        self.calls += 1
        self.rows += frame_rows(frame)
        return self.predict(frame)

"""The multivariate drift test: how badly a PCA fitted on the reference reconstructs new rows.

Per-feature tests miss a change in how features move *together* (two features whose
correlation flips keep their marginals). A PCA fitted on the reference's inputs captures
that joint structure; rows from a changed joint distribution fall off the kept components
and their reconstruction error grows. ``fit_pca_detector`` runs when a profile is built
(``drift.profile``); ``pca_drift`` runs on a sample of each window (``drift.window``).

Encoding (``encode``): numeric columns standardised with the reference's mean and
standard deviation (NaN becomes 0 after standardising: the mean, so a missing value adds
no error of its own); categorical columns one-hot over the reference's categories (a
value the reference never had, or a missing one: all zeros).

The detector's ``center`` and ``scale`` hold one entry per encoded dimension, numeric
dimensions first: for numeric ones the mean and standard deviation ``encode`` standardises
with; for one-hot ones the reference frequency of the category (subtracted before
projecting, as PCA needs centred data) and 1.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from drift.distributions import category_text
from drift.verdict import DriftStat, TestSettings

#: Fewest reference rows a detector is fitted on (half fit, half held out).
MIN_ROWS = 200
#: The smallest reconstruction error the test tells apart, as a share of the reference's
#: total variance: errors (and their spread) below it count as this much. Without it, a
#: detector whose held-out error is rounding noise (~1e-31) scores one odd row ~1e27.
ERROR_FLOOR = 0.01


class Encoding(Protocol):
    """What ``encode`` needs: the columns and how to standardise them."""

    @property
    def numeric(self) -> tuple[str, ...]: ...
    @property
    def categorical(self) -> dict[str, tuple[str, ...]]: ...
    @property
    def center(self) -> np.ndarray: ...
    @property
    def scale(self) -> np.ndarray: ...


@dataclass(frozen=True)
class _Standardiser:
    """An ``Encoding`` before the PCA exists (while fitting)."""

    numeric: tuple[str, ...]
    categorical: dict[str, tuple[str, ...]]
    center: np.ndarray
    scale: np.ndarray


@dataclass(frozen=True)
class PcaDetector:
    """A PCA of the reference's encoded inputs and its held-out reconstruction error.

    ``components`` is (kept components x encoded dimensions), orthonormal rows;
    ``error_mean`` / ``error_std``: the per-row squared reconstruction error on the half
    of the reference the PCA was *not* fitted on. ``total_variance``: the mean squared
    norm of the centred encoded rows (the error of a PCA that keeps nothing), the unit
    of ``ERROR_FLOOR``.
    """

    numeric: tuple[str, ...]
    categorical: dict[str, tuple[str, ...]]
    center: np.ndarray
    scale: np.ndarray
    components: np.ndarray
    error_mean: float
    error_std: float
    #: Rows the held-out error was measured on (its own noise widens the test).
    error_rows: int = 0
    #: 0 in profiles written before it was kept: then estimated from ``center``.
    total_variance: float = 0.0

    @property
    def columns(self) -> tuple[str, ...]:
        return (*self.numeric, *self.categorical)

    @property
    def error_floor(self) -> float:
        """The error (and error spread) below which rows count as reconstructed alike."""
        variance = self.total_variance
        if variance <= 0:
            # Standardised numbers have variance 1 each; a one-hot dimension of
            # frequency p has p (1 - p).
            frequencies = self.center[len(self.numeric) :]
            variance = len(self.numeric) + float(np.sum(frequencies * (1 - frequencies)))
        return ERROR_FLOOR * variance

    def to_dict(self) -> dict[str, Any]:
        return {
            "numeric": list(self.numeric),
            "categorical": {name: list(values) for name, values in self.categorical.items()},
            "center": [float(v) for v in self.center],
            "scale": [float(v) for v in self.scale],
            "components": [[float(v) for v in row] for row in self.components],
            "error_mean": self.error_mean,
            "error_std": self.error_std,
            "error_rows": self.error_rows,
            "total_variance": self.total_variance,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> PcaDetector:
        numeric = tuple(str(name) for name in data["numeric"])
        categorical = {
            str(name): tuple(str(v) for v in values) for name, values in data["categorical"].items()
        }
        dims = len(numeric) + sum(len(values) for values in categorical.values())
        components = np.asarray(data["components"], dtype=np.float64).reshape(-1, dims)
        return cls(
            numeric=numeric,
            categorical=categorical,
            center=np.asarray(data["center"], dtype=np.float64),
            scale=np.asarray(data["scale"], dtype=np.float64),
            components=components,
            error_mean=float(data["error_mean"]),
            error_std=float(data["error_std"]),
            error_rows=int(data.get("error_rows", 0)),
            total_variance=float(data.get("total_variance", 0.0)),
        )


def encode(spec: Encoding, columns: Mapping[str, np.ndarray]) -> np.ndarray:
    """The rows of ``columns`` as a (rows x dimensions) float64 matrix (see module doc)."""
    _row_count(columns, spec.numeric, spec.categorical)
    parts: list[np.ndarray] = []
    for i, name in enumerate(spec.numeric):
        values = np.asarray(columns[name], dtype=np.float64)
        standard = (values - spec.center[i]) / spec.scale[i]
        parts.append(np.nan_to_num(standard, nan=0.0, posinf=0.0, neginf=0.0)[:, None])
    parts.extend(
        _onehot(columns[name], categories) for name, categories in spec.categorical.items()
    )
    if not parts:
        raise ValueError("nothing to encode: the detector has no columns")
    return np.hstack(parts)


def reconstruction_errors(detector: PcaDetector, columns: Mapping[str, np.ndarray]) -> np.ndarray:
    """The squared reconstruction error of every row of ``columns``."""
    return _errors(detector, encode(detector, columns), detector.components)


def fit_pca_detector(
    columns: Mapping[str, np.ndarray],
    numeric: Sequence[str],
    categorical: Mapping[str, Sequence[str]],
    variance: float = 0.9,
    seed: int = 0,
) -> PcaDetector:
    """Fit on a random half of the rows and measure the error on the other half.

    ``categorical`` maps a column to the categories it is one-hot encoded over. Keeps
    the fewest components that explain ``variance`` of the fit half, but always leaves
    out at least one that carries variance: at most the numerical rank of the encoded
    rows less one. (A categorical feature's one-hot block sums to 1, so the rank is below
    the dimension count; keeping every non-null component would make every reference
    row reconstruct perfectly, and any row off that span infinitely unusual.)
    """
    if not 0 < variance < 1:
        raise ValueError(f"variance must be in (0, 1), got {variance}")
    categories = {name: tuple(values) for name, values in categorical.items()}
    rows = _row_count(columns, numeric, categories)
    if rows < MIN_ROWS:
        raise ValueError(f"a PCA detector needs at least {MIN_ROWS} reference rows, got {rows}")
    order = np.random.default_rng(seed).permutation(rows)
    fit, held_out = order[: rows // 2], order[rows // 2 :]
    fit_columns = {name: np.asarray(columns[name])[fit] for name in (*numeric, *categories)}
    spec = _standardiser(fit_columns, tuple(numeric), categories)
    matrix = encode(spec, fit_columns) - _offset(spec)
    _, singular, vt = np.linalg.svd(matrix, full_matrices=False)
    energy = singular**2
    if energy.sum() == 0:
        raise ValueError("the reference inputs are constant: nothing for a PCA to model")
    rank = _numerical_rank(singular, matrix.shape)
    if rank < 2:
        raise ValueError("the reference inputs vary along one direction: no joint structure")
    explained = np.cumsum(energy) / energy.sum()
    kept = int(np.searchsorted(explained, variance) + 1)
    kept = min(kept, rank - 1)
    components = vt[:kept]
    held_columns = {name: np.asarray(columns[name])[held_out] for name in fit_columns}
    errors = _errors(spec, encode(spec, held_columns), components)
    return PcaDetector(
        numeric=spec.numeric,
        categorical=spec.categorical,
        center=spec.center,
        scale=spec.scale,
        components=components,
        error_mean=float(errors.mean()),
        error_std=float(errors.std()),
        error_rows=int(errors.size),
        total_variance=float(energy.sum() / matrix.shape[0]),
    )


def pca_drift(
    detector: PcaDetector,
    columns: Mapping[str, np.ndarray],
    n_tests: int,
    settings: TestSettings,
) -> DriftStat:
    """Whether the current rows reconstruct worse than the reference's held-out rows.

    ``score``: their mean error over the reference's (1.0: like the reference). The
    p-value is one-sided (only worse reconstruction is drift), from the normal
    approximation of the mean of ``n`` row errors; the threshold is ``alpha / n_tests``.
    Both means, and the reference's spread, count as at least ``detector.error_floor``.
    """
    errors = reconstruction_errors(detector, columns)
    if errors.size == 0:
        raise ValueError("pca_drift needs at least one current row")
    floor = detector.error_floor
    mean = max(float(errors.mean()), floor)
    reference_mean = max(detector.error_mean, floor)
    score = mean / reference_mean
    # The standard error of the difference of two means: the window's and the held-out
    # reference's (ignoring the latter made small references false-alarm).
    reference_rows = detector.error_rows or math.inf
    spread = max(detector.error_std, floor) * math.sqrt(1 / errors.size + 1 / reference_rows)
    z = (mean - reference_mean) / spread
    p_value = 0.5 * math.erfc(z / math.sqrt(2))
    threshold = settings.alpha / max(n_tests, 1)
    return DriftStat(
        statistic="pca_reconstruction",
        score=score,
        p_value=p_value,
        threshold=threshold,
        drifted=p_value < threshold,
    )


def _standardiser(
    columns: Mapping[str, np.ndarray],
    numeric: tuple[str, ...],
    categorical: dict[str, tuple[str, ...]],
) -> _Standardiser:
    center: list[float] = []
    scale: list[float] = []
    for name in numeric:
        values = np.asarray(columns[name], dtype=np.float64)
        present = values[np.isfinite(values)]
        mean = float(present.mean()) if present.size else 0.0
        std = float(present.std()) if present.size else 0.0
        center.append(mean)
        scale.append(std if std > 0 else 1.0)
    # One-hot dimensions are not standardised (encode's zeros stay zeros); their
    # reference frequencies are the offset that centres them for the PCA.
    for name, categories in categorical.items():
        center.extend(_onehot(columns[name], categories).mean(axis=0))
        scale.extend([1.0] * len(categories))
    return _Standardiser(
        numeric, categorical, np.asarray(center, dtype=np.float64), np.asarray(scale)
    )


def _onehot(values: np.ndarray, categories: Sequence[str]) -> np.ndarray:
    """Indicators of ``values`` over ``categories``; other values and missing: zeros."""
    position = {category: j for j, category in enumerate(categories)}
    onehot = np.zeros((len(values), len(categories)), dtype=np.float64)
    for row, value in enumerate(values):
        text = category_text(value)
        j = None if text is None else position.get(text)
        if j is not None:
            onehot[row, j] = 1.0
    return onehot


def _offset(spec: Encoding) -> np.ndarray:
    """What to subtract from encoded rows to centre them: 0 for numeric dimensions
    (``encode`` centred them already), the reference frequencies for one-hot ones."""
    offset = np.array(spec.center, dtype=np.float64)
    offset[: len(spec.numeric)] = 0.0
    return offset


def _errors(spec: Encoding, encoded: np.ndarray, components: np.ndarray) -> np.ndarray:
    centred = encoded - _offset(spec)
    residual = centred - (centred @ components.T) @ components
    return np.asarray(np.einsum("ij,ij->i", residual, residual), dtype=np.float64)


def _row_count(
    columns: Mapping[str, np.ndarray],
    numeric: Sequence[str],
    categorical: Mapping[str, Sequence[str]],
) -> int:
    names = (*numeric, *categorical)
    missing = [name for name in names if name not in columns]
    if missing:
        raise ValueError(f"columns missing for the PCA detector: {', '.join(missing)}")
    lengths = {len(columns[name]) for name in names}
    if len(lengths) > 1:
        raise ValueError(f"the PCA detector's columns differ in length: {sorted(lengths)}")
    return lengths.pop() if lengths else 0


def _numerical_rank(singular: np.ndarray, shape: tuple[int, ...]) -> int:
    """Singular values above rounding noise (``numpy.linalg.matrix_rank``'s tolerance)."""
    tolerance = singular.max() * max(shape) * np.finfo(np.float64).eps
    return int(np.count_nonzero(singular > tolerance))

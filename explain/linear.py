"""The exact fast path for models linear in numeric input features.

For ``f(x) = b + sum_i w_i x_i`` with independent features, the Shapley value of feature i
against a background is ``w_i (x_i - E[x_i])`` and the base value is ``f(E[x])``: no
coalitions, no predict calls. ``linear_attributions`` computes that from known
coefficients. ``is_linear`` finds out, for a model of any format, whether it is linear in
its inputs by probing it with one predict call, and returns the coefficients; ``linear_explain``
chains the two. A model with categorical inputs, or rows with missing numbers (imputation is
not linear), takes Kernel SHAP instead.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from explain.attributions import Attribution
from explain.frame import Frame, PredictFn, column_means, concat, explained_output, frame_rows

#: Default tolerance of ``is_linear``: the largest residual of the linear fit allowed, as a
#: fraction of the predictions' scale (FP32 models round at about 1e-7 of it).
LINEAR_TOLERANCE = 1e-4
#: Probe points per coefficient (intercept included), drawn feature by feature at random.
_PROBES_PER_COEFFICIENT = 4
_MIN_PROBES = 32


def linear_attributions(
    coefficients: Mapping[str, float],
    intercept: float,
    rows: Frame,
    background_mean: Mapping[str, float],
) -> Attribution:
    """Exact Shapley values of ``intercept + sum(coefficients[i] * x_i)`` for ``rows``."""
    n_rows = frame_rows(rows)
    features = tuple(rows)
    for name in features:
        if name not in coefficients:
            raise ValueError(f"no coefficient for feature '{name}' (a zero must be explicit)")
        if name not in background_mean:
            raise ValueError(f"no background mean for feature '{name}'")
        if rows[name].dtype.kind != "f":
            raise ValueError(f"feature '{name}' is not numeric: use kernel_shap for it")
    unknown = sorted(set(coefficients) - set(features))
    if unknown:
        raise ValueError(f"coefficients for features the rows do not have: {unknown}")
    weights = np.array([coefficients[name] for name in features], dtype=np.float64)
    means = np.array([background_mean[name] for name in features], dtype=np.float64)
    matrix = np.column_stack([rows[name] for name in features]) if features else np.empty(0)
    matrix = matrix.reshape(n_rows, len(features))
    return Attribution(
        features=features,
        values=weights[None, :] * (matrix - means[None, :]),
        base_value=float(intercept + weights @ means),
        predictions=intercept + matrix @ weights,
        method="linear",
        detail={"coefficients": dict(zip(features, weights.tolist(), strict=True))},
    )


def is_linear(
    predict: PredictFn,
    rows: Frame,
    background: Frame,
    tol: float = LINEAR_TOLERANCE,
    *,
    seed: int = 0,
    output_index: int | None = None,
) -> Mapping[str, float] | None:
    """The coefficients of ``predict`` when it is linear in the features, else ``None``.

    Probes one predict call on the rows, the background and random points that take each
    feature's value from a different observed row (so the features vary independently and
    every coefficient is identified). Linear means the least-squares fit leaves no residual
    above ``tol`` times the predictions' scale (their largest magnitude or range). A frame
    with a categorical feature is never linear here.
    """
    fit = fit_linear(predict, rows, background, tol, seed=seed, output_index=output_index)
    return None if fit is None else fit[0]


def fit_linear(
    predict: PredictFn,
    rows: Frame,
    background: Frame,
    tol: float = LINEAR_TOLERANCE,
    *,
    seed: int = 0,
    output_index: int | None = None,
) -> tuple[dict[str, float], float] | None:
    """``is_linear`` with the intercept: ``(coefficients, intercept)`` or ``None``."""
    features = tuple(rows)
    if any(column.dtype.kind != "f" for column in rows.values()):
        return None
    pool = concat([rows, {name: background[name] for name in features}])
    probes = _probe_points(pool, np.random.default_rng(seed))
    if probes is None:
        return None
    n_probes = frame_rows(probes)
    outputs = explained_output(predict(probes), n_probes, output_index)
    design = np.column_stack([np.ones(n_probes), *(probes[name] for name in features)])
    solution, *_ = np.linalg.lstsq(design, outputs, rcond=None)
    residual = float(np.max(np.abs(design @ solution - outputs)))
    scale = max(float(np.max(np.abs(outputs))), float(np.ptp(outputs)), np.finfo(float).tiny)
    if not residual <= tol * scale:
        return None
    coefficients = dict(zip(features, map(float, solution[1:]), strict=True))
    return coefficients, float(solution[0])


def linear_explain(
    predict: PredictFn,
    rows: Frame,
    background: Frame,
    *,
    tol: float = LINEAR_TOLERANCE,
    seed: int = 0,
    output_index: int | None = None,
) -> Attribution | None:
    """Linear attributions when ``is_linear`` holds and no row has a missing number, else
    ``None`` (the caller falls back to ``kernel_shap``). Costs one predict call."""
    if any(column.dtype.kind != "f" or np.isnan(column).any() for column in rows.values()):
        return None
    fit = fit_linear(predict, rows, background, tol, seed=seed, output_index=output_index)
    if fit is None:
        return None
    coefficients, intercept = fit
    background_mean = column_means({name: background[name] for name in rows})
    return linear_attributions(coefficients, intercept, rows, background_mean)


def _probe_points(pool: Frame, rng: np.random.Generator) -> Frame | None:
    """Observed complete rows plus random recombinations of observed values (``None`` when
    no feature has an observed value)."""
    columns = {name: column[~np.isnan(column)] for name, column in pool.items()}
    if any(len(values) == 0 for values in columns.values()):
        return None
    complete = np.all([~np.isnan(column) for column in pool.values()], axis=0)
    n_random = max(_MIN_PROBES, _PROBES_PER_COEFFICIENT * (len(pool) + 1))
    probes: Frame = {}
    for name, values in columns.items():
        distinct = np.unique(values)
        # A feature seen with one value only still needs a second to identify its weight.
        choices = distinct if len(distinct) > 1 else np.array([distinct[0], distinct[0] + 1.0])
        probes[name] = np.concatenate([pool[name][complete], rng.choice(choices, n_random)])
    return probes

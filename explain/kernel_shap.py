"""Kernel SHAP (Lundberg & Lee, 2017) over a model's original input features.

The players are the features of ``rows`` as the caller sends them, so a categorical input
or a whole pipeline is explained by its inputs, never by encoded columns. A coalition ``z``
is valued as ``v(z) = mean over background rows b of f(x_z, b_not_z)``: present features
keep the explained row's value, absent ones take the background row's. The background is
a small sample of the reference data (``explain.frame.sample_rows``); ``base_value`` is the
mean prediction over it, ``v`` of the empty coalition.

Coalitions: when every one fits the budget (``2**M - 2 <= n_samples``) all are enumerated
and the result is the exact Shapley value of ``v``. Otherwise, as the ``shap`` package does,
whole subset-size layers (sizes 1 and M-1 first, where the Shapley kernel puts most weight)
are enumerated while the budget allows and the rest are sampled by the kernel, each draw
paired with its complement; repeated draws add weight instead of rows.

The weighted least squares enforces efficiency exactly by eliminating the last feature
(``phi_M = f(x) - base - sum(phi_1..M-1)``), so ``base_value + sum(values)`` equals the
prediction up to float error. The same coalitions serve every row, so one solve covers the
batch. Predict calls are the cost: the rows x coalitions x background frame is built at once
and sent in as few calls as ``max_batch_rows`` allows (the first call also carries the
background and the rows themselves).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from explain.attributions import Attribution
from explain.frame import (
    CountedPredict,
    Frame,
    PredictFn,
    concat,
    explained_output,
    frame_rows,
    require_features,
)

#: Rows per predict call above which the coalition frame is sent in chunks.
MAX_BATCH_ROWS = 200_000
#: Draws of the sampler per requested sample before it settles for fewer unique coalitions.
_MAX_DRAWS_PER_SAMPLE = 50


@dataclass(frozen=True)
class Coalitions:
    """Feature subsets (``masks[k, j]``: feature j present) and their regression weights."""

    masks: np.ndarray  # [K, M] bool
    weights: np.ndarray  # [K], summing to 1
    exact: bool


def kernel_shap(
    predict: PredictFn,
    rows: Frame,
    background: Frame,
    *,
    n_samples: int = 2048,
    seed: int = 0,
    output_index: int | None = None,
    max_batch_rows: int = MAX_BATCH_ROWS,
) -> Attribution:
    """Kernel SHAP attributions of ``rows``, one value per feature of ``rows``.

    ``n_samples`` bounds the coalitions evaluated per row (each costs ``len(background)``
    predicted rows); sampling needs at least ``2 * M`` of them. ``output_index`` picks the
    explained column when ``predict`` returns ``[n, k]`` (see ``explain.frame``).
    """
    features = tuple(rows)
    n_rows = frame_rows(rows)
    n_background = frame_rows(background)
    require_features(background, features, "the background")
    _require_matching_kinds(rows, background)
    if n_background == 0:
        raise ValueError("the background is empty: sample some reference rows into it")
    coalitions = shapley_coalitions(len(features), n_samples, np.random.default_rng(seed))
    counted = CountedPredict(predict)
    base_value, predictions, values = _coalition_values(
        counted,
        rows,
        background,
        coalitions.masks,
        output_index=output_index,
        max_batch_rows=max_batch_rows,
    )
    attributions = solve_constrained(
        coalitions, values - base_value, predictions - base_value, n_rows
    )
    return Attribution(
        features=features,
        values=attributions,
        base_value=base_value,
        predictions=predictions,
        method="kernel_shap",
        detail={
            "exact": coalitions.exact,
            "coalitions": len(coalitions.masks),
            "n_samples": n_samples,
            "background_rows": n_background,
            "seed": seed,
            "predict_calls": counted.calls,
            "predict_rows": counted.rows,
        },
    )


def min_samples(n_features: int) -> int:
    """The fewest ``n_samples`` that explain ``n_features`` features: all the coalitions
    when there are fewer than ``2 * M`` of them (three features or fewer), else ``2 * M``,
    what sampling needs (every feature alone and all but it)."""
    if n_features < 2:
        return 1
    return min((1 << n_features) - 2, 2 * n_features)


def shapley_coalitions(n_features: int, n_samples: int, rng: np.random.Generator) -> Coalitions:
    """All proper non-empty coalitions when they fit in ``n_samples``, else the hybrid of
    enumerated layers and kernel-sampled pairs described in the module docstring."""
    if n_features < 1:
        raise ValueError("nothing to explain: no features")
    if n_features == 1:
        return Coalitions(np.zeros((0, 1), bool), np.zeros(0), exact=True)
    if 2**n_features - 2 <= n_samples:
        return _all_coalitions(n_features)
    if n_samples < 2 * n_features:
        raise ValueError(
            f"n_samples={n_samples} is too few for {n_features} features: sampled Kernel SHAP "
            f"needs at least {2 * n_features} (every feature alone and all but it)"
        )
    return _sampled_coalitions(n_features, n_samples, rng)


def solve_constrained(
    coalitions: Coalitions, gains: np.ndarray, totals: np.ndarray, n_rows: int
) -> np.ndarray:
    """Weighted least squares of ``gains`` ([rows, K]: ``v(z) - base``) on the coalition
    masks, under ``sum(phi) == totals`` ([rows]: ``f(x) - base``) for every row."""
    n_features = coalitions.masks.shape[1]
    phi = np.zeros((n_rows, n_features))
    if n_features == 1:
        phi[:, 0] = totals
        return phi
    masks = coalitions.masks.astype(np.float64)
    last = masks[:, -1]
    design = masks[:, :-1] - last[:, None]
    targets = gains - last[None, :] * totals[:, None]
    root_weights = np.sqrt(coalitions.weights)
    solution, *_ = np.linalg.lstsq(
        design * root_weights[:, None], (targets * root_weights[None, :]).T, rcond=None
    )
    phi[:, :-1] = solution.T
    phi[:, -1] = totals - solution.sum(axis=0)
    return phi


def _coalition_values(
    counted: CountedPredict,
    rows: Frame,
    background: Frame,
    masks: np.ndarray,
    *,
    output_index: int | None,
    max_batch_rows: int,
) -> tuple[float, np.ndarray, np.ndarray]:
    """Base value, predictions ``[rows]`` and coalition values ``[rows, K]``."""
    n_rows, n_background, n_coalitions = frame_rows(rows), frame_rows(background), len(masks)
    n_pairs = n_rows * n_coalitions
    pairs_per_call = max(1, max_batch_rows // n_background)
    values = np.empty(n_pairs)
    base_value, predictions = math.nan, np.empty(0)
    # One call at least, even with no pairs (one feature, or no rows): it gives the base.
    for start in range(0, max(n_pairs, 1), pairs_per_call):
        stop = min(n_pairs, start + pairs_per_call)
        mixed = _mixed_rows(rows, background, masks, np.arange(start, stop))
        # The first call also predicts the background (base value) and the rows (f(x)).
        pieces = [background, rows, mixed] if start == 0 else [mixed]
        sizes = [frame_rows(piece) for piece in pieces]
        outputs = explained_output(counted(concat(pieces)), sum(sizes), output_index)
        if start == 0:
            base_value = float(outputs[:n_background].mean())
            predictions = outputs[n_background : n_background + n_rows]
            outputs = outputs[n_background + n_rows :]
        values[start:stop] = outputs.reshape(stop - start, n_background).mean(axis=1)
    return base_value, predictions, values.reshape(n_rows, n_coalitions)


def _mixed_rows(rows: Frame, background: Frame, masks: np.ndarray, pairs: np.ndarray) -> Frame:
    """For each (row, coalition) pair, ``len(background)`` rows: present features from the
    row, absent ones from each background row (pair-major order)."""
    n_coalitions = len(masks)
    if n_coalitions == 0:
        return {name: column[:0] for name, column in rows.items()}
    row_index, coalition_index = np.divmod(pairs, n_coalitions)
    present = masks[coalition_index]
    return {
        name: np.where(
            present[:, j, None], rows[name][row_index][:, None], background[name][None, :]
        ).ravel()
        for j, name in enumerate(rows)
    }


def _all_coalitions(n_features: int) -> Coalitions:
    codes = np.arange(1, 2**n_features - 1)
    masks = ((codes[:, None] >> np.arange(n_features)[None, :]) & 1).astype(bool)
    sizes = masks.sum(axis=1)
    weights = np.array(
        [_kernel_weight(n_features, int(size)) / math.comb(n_features, int(size)) for size in sizes]
    )
    return Coalitions(masks, weights / weights.sum(), exact=True)


def _kernel_weight(n_features: int, size: int) -> float:
    """The Shapley kernel's total weight of all coalitions of ``size`` features."""
    return (n_features - 1) / (size * (n_features - size))


def _sampled_coalitions(n_features: int, n_samples: int, rng: np.random.Generator) -> Coalitions:
    n_layers = math.ceil((n_features - 1) / 2)  # size s and its complement M - s share a layer
    n_paired = (n_features - 1) // 2  # layers whose complement is a different size
    layer_weights = np.array([_kernel_weight(n_features, s) for s in range(1, n_layers + 1)])
    layer_weights[:n_paired] *= 2
    layer_weights /= layer_weights.sum()

    masks: list[np.ndarray] = []
    weights: list[float] = []
    samples_left = n_samples
    remaining = layer_weights.copy()
    full_layers = 0
    for size in range(1, n_layers + 1):
        paired = size <= n_paired
        layer_count = math.comb(n_features, size) * (2 if paired else 1)
        # Enumerate the layer only when sampling would be expected to draw each of its
        # coalitions at least once anyway.
        if samples_left * remaining[size - 1] / layer_count < 1.0 - 1e-8:
            break
        full_layers += 1
        samples_left -= layer_count
        if remaining[size - 1] < 1.0:
            remaining /= 1.0 - remaining[size - 1]
        weight = layer_weights[size - 1] / layer_count
        for members in itertools.combinations(range(n_features), size):
            mask = np.zeros(n_features, bool)
            mask[list(members)] = True
            masks.append(mask)
            weights.append(weight)
            if paired:
                masks.append(~mask)
                weights.append(weight)

    if full_layers < n_layers and samples_left > 0:
        sampled_masks, counts = _draw_pairs(
            n_features,
            samples_left,
            first_layer=full_layers,
            layer_weights=layer_weights[full_layers:],
            n_paired=n_paired,
            rng=rng,
        )
        share_left = float(layer_weights[full_layers:].sum())
        masks.extend(sampled_masks)
        weights.extend(np.asarray(counts) * share_left / sum(counts))
    stacked = np.array(masks, dtype=bool).reshape(-1, n_features)
    return Coalitions(stacked, np.array(weights) / np.sum(weights), exact=False)


def _draw_pairs(
    n_features: int,
    budget: int,
    *,
    first_layer: int,
    layer_weights: np.ndarray,
    n_paired: int,
    rng: np.random.Generator,
) -> tuple[list[np.ndarray], list[float]]:
    """Unique coalitions drawn by the kernel from the layers after ``first_layer``, each
    with its complement when that is a different size; counts of draws as weights."""
    probabilities = layer_weights / layer_weights.sum()
    index: dict[bytes, int] = {}
    masks: list[np.ndarray] = []
    counts: list[float] = []
    for _ in range(_MAX_DRAWS_PER_SAMPLE * budget):
        if budget <= 0:
            break
        size = first_layer + 1 + int(rng.choice(len(probabilities), p=probabilities))
        mask = np.zeros(n_features, bool)
        mask[rng.permutation(n_features)[:size]] = True
        candidates = [mask, ~mask] if size <= n_paired else [mask]
        for candidate in candidates:
            key = candidate.tobytes()
            if key in index:
                counts[index[key]] += 1.0
            elif budget > 0:
                index[key] = len(masks)
                masks.append(candidate)
                counts.append(1.0)
                budget -= 1
    return masks, counts


def _require_matching_kinds(rows: Mapping[str, np.ndarray], background: Frame) -> None:
    for name, column in rows.items():
        if (column.dtype.kind == "O") != (background[name].dtype.kind == "O"):
            raise ValueError(
                f"feature '{name}' is {column.dtype} in the rows but {background[name].dtype} "
                "in the background: build both with explain.frame.as_frame"
            )

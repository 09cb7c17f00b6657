"""Synthetic input rows drawn from a reference profile: a background for explanations.

A reference profile (``drift.profile``) keeps each input feature's distribution as counts
over bins, not the training rows themselves. ``sample_inputs`` turns those counts back into
rows, so that a model version with a profile can be explained without its training set:
the runtime's explain endpoint draws its Kernel SHAP background here.

Each feature is drawn on its own from its marginal (``drift.distributions.Distribution``):

- numeric: a bin by its share of the counts, then a value uniform within the bin; the outer
  bins are bounded by the reference's ``low``/``high``, and a zero-width bin gives its edge.
  A missing value (NaN) comes up with the reference's share of missing values;
- categorical: a category by its share of the counts, never ``OTHER`` (its mass is dropped:
  it stands for many rare values, none of which can be named); ``None`` with the missing
  share.

Sampling the marginals independently is the *interventional, independent features* choice
of SHAP: a background row combines values that were never seen together, and a feature is
credited with what the model does when that feature alone is changed. For correlated
features (``fare`` and ``pclass``) this splits the credit by how the model uses each one,
not by the information they share, and the model is also evaluated on combinations the
training data never had (a first-class ticket at a third-class fare). Real reference rows
(``explain.frame.sample_rows``) keep the joint distribution when they are at hand; a
profile only has the marginals.
"""

from __future__ import annotations

import numpy as np

from drift.distributions import OTHER, Distribution
from drift.profile import ReferenceProfile


def sample_inputs(profile: ReferenceProfile, rows: int, seed: int = 0) -> dict[str, np.ndarray]:
    """``rows`` synthetic rows of the profile's input features, keyed by feature name.

    Numeric features come back as float64 (NaN for missing), categorical ones as object
    arrays of ``str``/``None``. The same profile, ``rows`` and ``seed`` give the same rows.
    """
    if rows < 0:
        raise ValueError(f"rows must not be negative, got {rows}")
    rng = np.random.default_rng(seed)
    return {
        feature.name: sample_feature(feature.distribution, rows, rng)
        for feature in profile.features
        if feature.role == "input"
    }


def sample_feature(distribution: Distribution, rows: int, rng: np.random.Generator) -> np.ndarray:
    """``rows`` values of one feature drawn from its distribution (see the module doc)."""
    if distribution.kind == "numeric":
        return _sample_numeric(distribution, rows, rng)
    return _sample_categorical(distribution, rows, rng)


def _sample_numeric(distribution: Distribution, rows: int, rng: np.random.Generator) -> np.ndarray:
    edges = np.asarray(distribution.edges, dtype=np.float64)
    counts = np.asarray(distribution.counts, dtype=np.float64)
    if len(counts) != len(edges) + 1:
        raise ValueError(f"{len(edges)} edges need {len(edges) + 1} bin counts, got {len(counts)}")
    # Only an empty outer bin may lack its bound: it is never drawn, so any bound will do.
    low = distribution.low if distribution.low is not None else _first(edges)
    high = distribution.high if distribution.high is not None else _last(edges)
    lower = np.concatenate([[low], edges])
    upper = np.concatenate([edges, [high]])
    choice = _draw(np.append(counts, distribution.missing), rows, rng)
    missing = choice == len(counts)
    bins = np.where(missing, 0, choice)
    # A bin whose bound lies inside it (e.g. low above the first edge) collapses to the edge.
    start, stop = lower[bins], np.maximum(upper[bins], lower[bins])
    values: np.ndarray = start + (stop - start) * rng.random(rows)
    values[missing] = np.nan
    return values


def _sample_categorical(
    distribution: Distribution, rows: int, rng: np.random.Generator
) -> np.ndarray:
    categories = list(distribution.categories)
    counts = np.asarray(distribution.counts, dtype=np.float64)
    if len(counts) != len(categories):
        raise ValueError(f"{len(categories)} categories need as many counts, got {len(counts)}")
    named = np.array([name != OTHER for name in categories])
    choice = _draw(np.append(counts[named], distribution.missing), rows, rng)
    pool = np.empty(int(named.sum()) + 1, dtype=object)
    pool[:-1] = [name for name in categories if name != OTHER]
    pool[-1] = None
    sampled: np.ndarray = pool[choice]
    return sampled


def _draw(weights: np.ndarray, rows: int, rng: np.random.Generator) -> np.ndarray:
    """Indices into ``weights`` drawn in proportion to them."""
    total = float(weights.sum())
    if total <= 0:
        raise ValueError("the distribution has no values to sample from (all counts are 0)")
    return rng.choice(len(weights), size=rows, p=weights / total)


def _first(edges: np.ndarray) -> float:
    return float(edges[0]) if len(edges) else 0.0


def _last(edges: np.ndarray) -> float:
    return float(edges[-1]) if len(edges) else 0.0

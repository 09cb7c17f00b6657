"""Drift statistics: one statistic, one pure function over two ``Distribution``s.

The reference profile's distribution of a feature and the current window's (scanned over
the *same* bins, see ``drift.distributions``) go in; a score, and for the tests that have
one a p-value, come out. ``drift.calibration`` decides from these whether a feature
drifted; nothing here knows about thresholds, windows or the log.

============== ============ ======= ============================================================
statistic      kinds        p-value what it measures
============== ============ ======= ============================================================
psi            both         no      population stability index, missing as one more bin
jensen_shannon both         no      Jensen-Shannon distance, log base 2, in [0, 1]
wasserstein    numeric      no      first Wasserstein distance / the reference's std (*)
ks             numeric      yes     two-sample Kolmogorov-Smirnov on the binned CDFs
chi_square     both         yes     two-sample contingency chi-square, missing as a category
============== ============ ======= ============================================================

(*) A constant reference (its minimum equals its maximum) has no standard deviation to
measure in, and the window's bins say which of its values left the reference's value but
not how far: its Wasserstein score is the share of the window's values that did, 0 to 1
(``wasserstein``).

Each statistic is also available vectorised over many pairs of count vectors
(``batch_scores``): calibration resamples the reference thousands of times and must score
every draw exactly as the real window is scored, so the public functions below and the
batch path share one kernel per statistic.

Count vectors in the kernels are the bin counts with the missing count appended as a last
column; ``wasserstein`` and ``ks`` ignore that column (they compare values, and a missing
value has none), the others treat it as one more bin.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import scipy.stats

from drift.distributions import Distribution

FloatArray = npt.NDArray[np.float64]
CountArray = npt.NDArray[np.int64]

#: The share given to a bin that one sample leaves empty, so that PSI's log stays finite
#: (the usual convention of PSI implementations: 1e-4, i.e. 0.01 %).
PSI_EMPTY_SHARE = 1e-4
#: Above this effective sample size the KS p-value uses the asymptotic Kolmogorov law;
#: below it, the exact one-sample law ``kstwo`` at the effective size.
KS_EXACT_LIMIT = 10_000
#: Below this expected count in any cell, the chi-square p-value is a Monte Carlo one
#: (Cochran's rule: the asymptotic law needs expected counts of about 5).
CHI_SQUARE_MIN_EXPECTED = 5.0
#: Monte Carlo draws for a sparse chi-square table, and their seed (reproducible runs).
CHI_SQUARE_DRAWS = 10_000
CHI_SQUARE_SEED = 0


@dataclass(frozen=True)
class Statistic:
    """A drift statistic as the rest of the package sees it.

    ``kinds``: the feature kinds it applies to. ``has_p_value``: decided by its p-value
    (alpha-corrected) rather than by its score (calibrated threshold).
    ``counts_missing``: whether missing values are part of what it compares (one more
    bin); when not, its sample size is the count of values, not of rows.
    """

    name: str
    kinds: frozenset[str]
    has_p_value: bool
    counts_missing: bool


_BOTH = frozenset({"numeric", "categorical"})
_NUMERIC = frozenset({"numeric"})

STATISTICS: dict[str, Statistic] = {
    s.name: s
    for s in (
        Statistic("psi", _BOTH, has_p_value=False, counts_missing=True),
        Statistic("jensen_shannon", _BOTH, has_p_value=False, counts_missing=True),
        Statistic("wasserstein", _NUMERIC, has_p_value=False, counts_missing=False),
        Statistic("ks", _NUMERIC, has_p_value=True, counts_missing=False),
        Statistic("chi_square", _BOTH, has_p_value=True, counts_missing=True),
    )
}


def psi(reference: Distribution, current: Distribution) -> float:
    """Population stability index: sum over bins (and missing) of (q - p) * ln(q / p).

    ``p``/``q`` are the reference's/current's shares of rows; a share of 0 counts as
    ``PSI_EMPTY_SHARE`` so that a bin only one side fills adds a large but finite term.
    """
    ref, cur = _paired_counts("psi", reference, current)
    return float(_psi_kernel(ref, cur)[0])


def jensen_shannon(reference: Distribution, current: Distribution) -> float:
    """Jensen-Shannon *distance* (square root of the divergence) with logarithms in base 2.

    Base 2 bounds it to [0, 1]: 0 for equal shares, 1 for shares with no bin in common.
    Missing values count as one more bin. Symmetric in its arguments.
    """
    ref, cur = _paired_counts("jensen_shannon", reference, current)
    return float(_jensen_shannon_kernel(ref, cur)[0])


def wasserstein(reference: Distribution, current: Distribution) -> float:
    """First Wasserstein distance between the binned values, in reference standard deviations.

    W1 is the integral of |F_ref - F_cur| over the bins, each CDF linear inside a bin (the
    values spread evenly over it). The outer bins reach to the reference's ``low``/``high``;
    current values beyond them are counted at that extent, so a window that moves far past
    the reference's range scores as if it stopped at its edge. Divided by the reference's
    ``scale``; where that is 0 or unknown, by ``high - low``, or else by 1.

    A constant reference (``low == high``) has no scale: its standard deviation is 0, or
    a rounding error such as 1e-17 for a column of 0.1s, and its outer bins have no
    width, so the ratio would be 0 whatever the window held. The bins say only which of
    the window's values left the reference's value, not how far. The score is then the
    share of them that did, from 0 (the same value throughout) to 1 (every value left
    it): the Wasserstein distance measured in units of how far the values moved.
    """
    ref, cur = _paired_counts("wasserstein", reference, current)
    return float(_wasserstein_kernel(ref, cur, reference)[0])


def ks(reference: Distribution, current: Distribution) -> tuple[float, float]:
    """Two-sample Kolmogorov-Smirnov on the binned values: (D, p-value).

    D is max |F_ref - F_cur| over the bin edges. The p-value is the Kolmogorov law's tail
    at the effective size n*m/(n+m) (the exact ``kstwo`` law below ``KS_EXACT_LIMIT``, the
    asymptotic ``kstwobign`` above). Binning can only hide differences inside a bin, so the
    binned D is at most the raw one and the test is conservative: it flags less often
    than ``scipy.stats.ks_2samp`` on the raw values would.
    """
    ref, cur = _paired_counts("ks", reference, current)
    distance = float(_ks_kernel(ref, cur)[0])
    n, m = reference.total, current.total
    effective = n * m / (n + m)
    if effective < KS_EXACT_LIMIT:
        p_value = float(scipy.stats.kstwo.sf(distance, max(1, round(effective))))
    else:
        p_value = float(scipy.stats.kstwobign.sf(distance * np.sqrt(effective)))
    return distance, min(1.0, max(0.0, p_value))


def chi_square(reference: Distribution, current: Distribution) -> tuple[float, float]:
    """Two-sample chi-square test of homogeneity: (statistic, p-value).

    The 2 x K table holds both samples' counts over the bins with any count in either
    (missing is one more category); the statistic is Pearson's, without Yates'
    correction. Not a goodness-of-fit against the reference's shares: the reference is a
    sample too. With fewer than two non-empty categories there is nothing to compare:
    (0.0, 1.0).

    The p-value is the asymptotic chi-square law's while every expected count is at least
    ``CHI_SQUARE_MIN_EXPECTED``. Below that (a value the reference never had, or a first
    missing value, in a small window) the law does not hold: one such row would look
    like p < 0.001. The p-value is then a Monte Carlo one (``_chi_square_monte_carlo``).
    """
    ref, cur = _paired_counts("chi_square", reference, current)
    table = np.vstack([ref[0], cur[0]])
    table = table[:, table.sum(axis=0) > 0]
    if table.shape[1] < 2:
        return 0.0, 1.0
    result = scipy.stats.chi2_contingency(table, correction=False)
    statistic = float(result.statistic)
    if result.expected_freq.min() >= CHI_SQUARE_MIN_EXPECTED:
        return statistic, float(result.pvalue)
    return statistic, _chi_square_monte_carlo(table)


def _chi_square_monte_carlo(table: CountArray) -> float:
    """The chance, with both margins fixed, of a statistic at least the observed one.

    Under homogeneity and given the category totals, the window's counts are a
    multivariate hypergeometric draw of its row count from those totals (an exact
    conditional test, as Fisher's). ``CHI_SQUARE_DRAWS`` seeded draws, p = (1 + draws at
    least as extreme) / (draws + 1): never 0, so never below about 1e-4.
    """
    totals = table.sum(axis=0)
    rng = np.random.default_rng(CHI_SQUARE_SEED)
    current = rng.multivariate_hypergeometric(totals, int(table[1].sum()), size=CHI_SQUARE_DRAWS)
    null = _chi_square_kernel(totals - current, current)
    observed = float(_chi_square_kernel(table[:1], table[1:])[0])
    # Tied tables can differ in the last bits of their sums: count them as ties.
    extreme = int(np.count_nonzero(null >= observed * (1 - 1e-9)))
    return (1 + extreme) / (CHI_SQUARE_DRAWS + 1)


def score(name: str, reference: Distribution, current: Distribution) -> tuple[float, float | None]:
    """The statistic ``name`` between two distributions: (score, p-value or None)."""
    statistic = statistic_named(name)
    if statistic.name == "ks":
        return ks(reference, current)
    if statistic.name == "chi_square":
        return chi_square(reference, current)
    return _SCORE_ONLY[statistic.name](reference, current), None


def statistic_named(name: str) -> Statistic:
    """The registry entry for ``name``; ValueError naming the known ones otherwise."""
    try:
        return STATISTICS[name]
    except KeyError:
        known = ", ".join(sorted(STATISTICS))
        raise ValueError(f"unknown drift statistic {name!r}; use one of: {known}") from None


def check_fits(name: str, reference: Distribution, current: Distribution | None = None) -> None:
    """Raise ValueError unless ``name`` applies to the reference's kind and both share bins."""
    statistic = statistic_named(name)
    if reference.kind not in statistic.kinds:
        kinds = " or ".join(sorted(statistic.kinds))
        raise ValueError(
            f"{name} compares {kinds} features, not {reference.kind} ones; "
            f"pick another statistic for {reference.kind} features"
        )
    if current is None:
        return
    if current.kind != reference.kind:
        raise ValueError(
            f"cannot compare a {reference.kind} reference with a {current.kind} window"
        )
    same_bins = (
        current.edges == reference.edges
        and current.categories == reference.categories
        and current.counts.shape == reference.counts.shape
    )
    if not same_bins:
        raise ValueError(
            "reference and current have different bins: scan the window over the "
            "reference's edges/categories (Distribution.with_counts)"
        )


def sample_size(name: str, distribution: Distribution) -> int:
    """How many observations ``name`` compares: rows if it counts missing, else values."""
    return distribution.rows if statistic_named(name).counts_missing else distribution.total


def counts_with_missing(distribution: Distribution) -> CountArray:
    """The bin counts with the missing count appended: the kernels' row layout."""
    return np.append(distribution.counts, distribution.missing).astype(np.int64)


def batch_scores(
    name: str, reference: Distribution, reference_counts: CountArray, current_counts: CountArray
) -> FloatArray:
    """The score of ``name`` for each row pair of two (rounds, bins + 1) count arrays.

    Rows are laid out as ``counts_with_missing``; ``reference`` supplies the bins' geometry
    (edges, ``low``/``high``, ``scale``). For the p-value tests this is the statistic
    (D, chi-square), not the p-value. A row whose sample is empty scores NaN.
    """
    check_fits(name, reference)
    ref = np.atleast_2d(np.asarray(reference_counts, dtype=np.int64))
    cur = np.atleast_2d(np.asarray(current_counts, dtype=np.int64))
    if ref.shape != cur.shape or ref.shape[1] != reference.counts.size + 1:
        raise ValueError(
            f"count arrays must both be (rounds, {reference.counts.size + 1}); "
            f"got {ref.shape} and {cur.shape}"
        )
    if name == "wasserstein":
        return _wasserstein_kernel(ref, cur, reference)
    return _KERNELS[name](ref, cur)


def _paired_counts(
    name: str, reference: Distribution, current: Distribution
) -> tuple[CountArray, CountArray]:
    check_fits(name, reference, current)
    for role, distribution in (("reference", reference), ("current window", current)):
        if sample_size(name, distribution) == 0:
            what = "rows" if STATISTICS[name].counts_missing else "values that are not missing"
            raise ValueError(f"{name} needs {what} in the {role}; it has none")
    return counts_with_missing(reference)[None, :], counts_with_missing(current)[None, :]


def _shares(counts: CountArray) -> FloatArray:
    totals = counts.sum(axis=1, keepdims=True).astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        shares: FloatArray = counts / totals
    return shares


def _value_cdf(counts: CountArray) -> FloatArray:
    """The CDF of the values (missing column dropped) at the k interior edges."""
    values = counts[:, :-1]
    totals = values.sum(axis=1, keepdims=True).astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        cdf: FloatArray = np.cumsum(values, axis=1)[:, :-1] / totals
    return cdf


def _psi_kernel(ref: CountArray, cur: CountArray) -> FloatArray:
    p, q = _shares(ref), _shares(cur)
    p = np.where(p == 0, PSI_EMPTY_SHARE, p)
    q = np.where(q == 0, PSI_EMPTY_SHARE, q)
    result: FloatArray = np.sum((q - p) * np.log(q / p), axis=1)
    return result


def _jensen_shannon_kernel(ref: CountArray, cur: CountArray) -> FloatArray:
    p, q = _shares(ref), _shares(cur)
    middle = (p + q) / 2
    with np.errstate(invalid="ignore", divide="ignore"):
        # 0 * log(0) is 0: a bin empty in one sample adds nothing for that sample.
        left = np.where(p > 0, p * np.log2(p / middle), 0.0)
        right = np.where(q > 0, q * np.log2(q / middle), 0.0)
    divergence = (left.sum(axis=1) + right.sum(axis=1)) / 2
    # Rounding can leave a divergence a hair below 0 or above 1.
    result: FloatArray = np.sqrt(np.clip(divergence, 0.0, 1.0))
    result[np.isnan(divergence)] = np.nan
    return result


def _ks_kernel(ref: CountArray, cur: CountArray) -> FloatArray:
    difference = np.abs(_value_cdf(ref) - _value_cdf(cur))
    # With a single bin there are no edges to differ at: D is 0 (NaN for an empty sample).
    padded = np.hstack([np.zeros((difference.shape[0], 1)), difference])
    empty = (ref[:, :-1].sum(axis=1) == 0) | (cur[:, :-1].sum(axis=1) == 0)
    result: FloatArray = np.where(empty, np.nan, padded.max(axis=1))
    return result


def _wasserstein_kernel(ref: CountArray, cur: CountArray, reference: Distribution) -> FloatArray:
    if reference.low is not None and reference.low == reference.high:
        return _moved_share(ref, cur)
    boundaries = _bin_boundaries(reference)
    rounds = ref.shape[0]
    zeros, ones = np.zeros((rounds, 1)), np.ones((rounds, 1))
    gap = np.hstack([zeros, _value_cdf(ref), ones]) - np.hstack([zeros, _value_cdf(cur), ones])
    start, end = gap[:, :-1], gap[:, 1:]
    widths = np.maximum(np.diff(boundaries), 0.0)
    size = np.abs(start) + np.abs(end)
    crosses = start * end < 0
    with np.errstate(invalid="ignore", divide="ignore"):
        # Linear CDFs inside a bin: integrate |gap| exactly, a triangle pair where it
        # changes sign within the bin, a trapezoid otherwise.
        area = np.where(crosses, (start**2 + end**2) / (2 * size), size / 2)
    distance: FloatArray = (area * widths).sum(axis=1) / _wasserstein_unit(reference)
    return distance


def _moved_share(ref: CountArray, cur: CountArray) -> FloatArray:
    """The share of the values that differ between the two (total variation distance):
    with every reference value in one bin, the share of the window's outside it."""
    ref_values, cur_values = ref[:, :-1], cur[:, :-1]
    with np.errstate(invalid="ignore", divide="ignore"):
        ref_shares = ref_values / ref_values.sum(axis=1, keepdims=True)
        cur_shares = cur_values / cur_values.sum(axis=1, keepdims=True)
    moved: FloatArray = np.abs(ref_shares - cur_shares).sum(axis=1) / 2
    return moved


def _bin_boundaries(reference: Distribution) -> FloatArray:
    """low, the interior edges, high: where the binned CDFs are known."""
    edges = np.asarray(reference.edges, dtype=np.float64)
    if edges.size == 0:
        return np.array([0.0, 0.0])
    # Profiles without their extent: give each outer bin one typical inner bin's width.
    typical = float(np.diff(edges).mean()) if edges.size > 1 else 1.0
    low = reference.low if reference.low is not None else float(edges[0]) - typical
    high = reference.high if reference.high is not None else float(edges[-1]) + typical
    return np.concatenate([[min(low, edges[0])], edges, [max(high, edges[-1])]])


def _wasserstein_unit(reference: Distribution) -> float:
    if reference.scale:
        return float(reference.scale)
    if reference.low is not None and reference.high is not None and reference.high > reference.low:
        return float(reference.high - reference.low)
    return 1.0


def _chi_square_kernel(ref: CountArray, cur: CountArray) -> FloatArray:
    table = np.stack([ref, cur], axis=1).astype(np.float64)  # (rounds, 2, bins)
    column = table.sum(axis=1, keepdims=True)
    row = table.sum(axis=2, keepdims=True)
    expected = row * column / table.sum(axis=(1, 2), keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        # Empty categories (expected 0) are left out of the table, as in ``chi_square``.
        cells = np.where(expected > 0, (table - expected) ** 2 / expected, 0.0)
    result: FloatArray = cells.sum(axis=(1, 2))
    empty_sample = (row[:, :, 0] == 0).any(axis=1)
    result[empty_sample] = np.nan
    return result


_KERNELS: dict[str, Callable[[CountArray, CountArray], FloatArray]] = {
    "psi": _psi_kernel,
    "jensen_shannon": _jensen_shannon_kernel,
    "ks": _ks_kernel,
    "chi_square": _chi_square_kernel,
}

_SCORE_ONLY: dict[str, Callable[[Distribution, Distribution], float]] = {
    "psi": psi,
    "jensen_shannon": jensen_shannon,
    "wasserstein": wasserstein,
}

"""Attribution drift: how a model's reliance on its features moved between two runs.

Jobs compute an ``Importance`` per model version and window of traffic; comparing two of
them says whether the model now leans on different features, even when the inputs' own
distributions (``drift/``) look stable. Two views: ``importance_shift`` compares each
feature's *share* of the total importance, so a uniform rescaling (a busier window, a
different metric scale) is no shift; ``rank_correlation`` compares the order alone.
"""

from __future__ import annotations

import math

import numpy as np
import scipy.stats

from explain.attributions import Importance


def importance_shift(previous: Importance, current: Importance) -> dict[str, float]:
    """Per feature, current minus previous share of the total importance (negative
    importance counts as 0). A feature present in one run only has share 0 in the other."""
    before, after = previous.shares(), current.shares()
    features = list(previous.features) + [f for f in current.features if f not in before]
    return {name: after.get(name, 0.0) - before.get(name, 0.0) for name in features}


def rank_correlation(previous: Importance, current: Importance) -> float:
    """Spearman's rank correlation of the features both runs have: 1.0 for the same order.

    NaN when it is undefined: fewer than two shared features, or one run ranks every shared
    feature the same (all importances equal).
    """
    before, after = previous.as_dict(), current.as_dict()
    shared = [name for name in previous.features if name in after]
    if len(shared) < 2:
        return math.nan
    first = np.array([before[name] for name in shared])
    second = np.array([after[name] for name in shared])
    if np.ptp(first) == 0 or np.ptp(second) == 0:
        return math.nan
    return float(scipy.stats.spearmanr(first, second).statistic)

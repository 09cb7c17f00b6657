"""Did the share of missing values change? The test beside a numeric feature's own.

KS and Wasserstein compare the values that are there and ignore the rest, so a numeric
feature whose upstream starts sending nulls would pass them. ``drift.job`` therefore adds
this test for every numeric feature whose reference or window has missing values (as
``<feature>:missing``), counted in the model version's family of tests like any other.

Two-sided two-proportion z-test with the pooled share: drifted when p < alpha / n_tests
*and* the share moved by more than ``min_effect["missing_share"]`` (default 0.02: two
percentage points), so that a huge window does not alert on a change nobody would act on.
The score is the change in share (window minus reference).
"""

from __future__ import annotations

import math

import scipy.stats

from drift.distributions import Distribution
from drift.verdict import DriftStat, TestSettings

STATISTIC = "missing_share"
#: The smallest change of share worth an alert when ``min_effect`` does not say.
DEFAULT_MIN_EFFECT = 0.02


def needs_missing_test(reference: Distribution, current: Distribution) -> bool:
    """Numeric features with a missing value on either side get the test."""
    return reference.kind == "numeric" and (reference.missing > 0 or current.missing > 0)


def missing_share_drift(
    reference: Distribution, current: Distribution, n_tests: int, settings: TestSettings
) -> DriftStat:
    if n_tests < 1:
        raise ValueError(f"n_tests must be at least 1, got {n_tests}")
    level = settings.alpha / n_tests
    n_ref, n_cur = reference.rows, current.rows
    if n_ref == 0 or n_cur == 0:
        return DriftStat(STATISTIC, math.nan, math.nan, level, drifted=False)
    share_ref, share_cur = reference.missing / n_ref, current.missing / n_cur
    change = share_cur - share_ref
    pooled = (reference.missing + current.missing) / (n_ref + n_cur)
    spread = math.sqrt(pooled * (1 - pooled) * (1 / n_ref + 1 / n_cur))
    p_value = float(2 * scipy.stats.norm.sf(abs(change) / spread)) if spread > 0 else 1.0
    floor = settings.min_effect.get(STATISTIC, DEFAULT_MIN_EFFECT)
    drifted = p_value < level and abs(change) > floor
    return DriftStat(
        STATISTIC, change, p_value, level, drifted=drifted, effect=abs(change), min_effect=floor
    )

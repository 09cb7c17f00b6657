"""Concept drift from labels: is the model getting *worse*, not just seeing other inputs?

Once ground truth arrives for logged predictions, ``drift.job`` turns each into an error
(0/1 for a classifier, the absolute error for a regressor) and asks two questions here:

- ``performance_drift``: is the window's mean error higher than the reference's? A
  one-sided Welch z-test, decided like every other p-value test (``alpha / n_tests``).
- ``first_alarm``: where, in time order, did the error rate start climbing? The
  Page-Hinkley test (``PageHinkley``) run over the window's error stream; the job reports
  the index of its first alarm so the report can point at when things went wrong.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt
import scipy.stats

from drift.verdict import DriftStat, TestSettings


@dataclass
class PageHinkley:
    """The Page-Hinkley test for an increase in a stream's mean (as in river, scikit-multiflow).

    With x̄_t the running mean, the detector keeps m_t = alpha * m_(t-1) + (x_t - x̄_t - delta)
    and its running minimum M_t, and alarms when m_t - M_t > ``threshold``: the stream has
    sat above its own mean by more than ``delta`` per step for long enough. ``alpha`` < 1
    slowly forgets the past; no alarm comes before ``min_instances`` values. After an alarm
    the next ``update`` starts afresh, as in river.

    ``threshold`` is 100, not river's 50: on 5,000-row windows of 0/1 errors at rates 0.2
    to 0.45, 50 alarmed on 2-11% of stable windows and 100 on none of 100, while still
    catching a jump from 0.3 to 0.7 in every one, about 240 rows after it (measured with
    this module; bench/drift_quality.py reports the rates at default settings).
    """

    delta: float = 0.005
    threshold: float = 100.0
    alpha: float = 0.9999
    min_instances: int = 30
    _count: int = field(default=0, init=False, repr=False)
    _mean: float = field(default=0.0, init=False, repr=False)
    _cumulative: float = field(default=0.0, init=False, repr=False)
    _minimum: float = field(default=0.0, init=False, repr=False)
    _alarmed: bool = field(default=False, init=False, repr=False)

    def update(self, x: float) -> bool:
        """Take the next value; True when the mean has increased (an alarm)."""
        if self._alarmed:
            self.reset()
        self._count += 1
        self._mean += (x - self._mean) / self._count
        self._cumulative = self.alpha * self._cumulative + (x - self._mean - self.delta)
        self._minimum = min(self._minimum, self._cumulative)
        if self._count < self.min_instances:
            return False
        self._alarmed = self._cumulative - self._minimum > self.threshold
        return self._alarmed

    def reset(self) -> None:
        """Forget everything seen so far."""
        self._count = 0
        self._mean = 0.0
        self._cumulative = 0.0
        self._minimum = 0.0
        self._alarmed = False


def first_alarm(errors: npt.ArrayLike, detector: PageHinkley | None = None) -> int | None:
    """The index of the first Page-Hinkley alarm over ``errors`` (in time order), or None.

    ``detector`` defaults to a fresh ``PageHinkley()``; one passed in is updated in place
    from its current state (``reset()`` it to start over).
    """
    detector = PageHinkley() if detector is None else detector
    for index, error in enumerate(np.asarray(errors, dtype=np.float64).ravel()):
        if detector.update(float(error)):
            return index
    return None


def performance_drift(  # noqa: PLR0917 - the job passes the two samples' summaries in order
    reference_n: int,
    reference_mean: float,
    reference_std: float,
    current_n: int,
    current_mean: float,
    current_std: float,
    n_tests: int,
    settings: TestSettings,
) -> DriftStat:
    """Is the current mean error higher than the reference's? (statistic ``performance``)

    One-sided Welch z-test: z = (current_mean - reference_mean) / sqrt(s_r^2/n_r + s_c^2/n_c),
    p = P(Z > z). The score is the increase in mean error; the threshold alpha / n_tests
    (Bonferroni, as for every test of the model version); drifted when p < threshold. For
    0/1 errors pass std = sqrt(rate * (1 - rate)). With no errors on either side the score
    is NaN and nothing drifts. When both spreads are 0 any increase has p = 0.
    """
    if n_tests < 1:
        raise ValueError(f"n_tests must be at least 1, got {n_tests}")
    threshold = settings.alpha / n_tests
    if reference_n < 1 or current_n < 1:
        return DriftStat("performance", math.nan, math.nan, threshold, drifted=False)
    increase = current_mean - reference_mean
    standard_error = math.sqrt(reference_std**2 / reference_n + current_std**2 / current_n)
    if standard_error > 0:
        p_value = float(scipy.stats.norm.sf(increase / standard_error))
    else:
        p_value = 0.0 if increase > 0 else 1.0
    return DriftStat("performance", increase, p_value, threshold, drifted=p_value < threshold)

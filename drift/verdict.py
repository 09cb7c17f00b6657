"""What a drift test answers (``DriftStat``) and the settings every test decision uses.

A test's ``threshold`` is compared with its p-value when it has one (drifted when
``p_value < threshold``; the threshold is then alpha corrected for the number of tests)
and with its score otherwise (drifted when ``score > threshold``; the threshold is then
calibrated on the reference for the current window's size, see ``drift.calibration``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal


@dataclass(frozen=True, slots=True)
class DriftStat:
    """The outcome of one test on one feature (or on all of them, for a joint test)."""

    statistic: str
    score: float
    p_value: float | None
    threshold: float
    drifted: bool

    @property
    def compares(self) -> Literal["p_value", "score"]:
        return "score" if self.p_value is None else "p_value"


@dataclass(frozen=True)
class TestSettings:
    """How drift is decided.

    ``alpha``: the family-wise false-alarm rate per window, over all tests of one model
    version together (Bonferroni: each of m tests runs at ``alpha / m``).
    ``small_sample``: windows of at most this many rows use the p-value tests (KS,
    chi-square); larger ones the effect-size scores (Wasserstein, Jensen-Shannon) with
    thresholds calibrated on the reference.
    ``rounds`` / ``seed``: the resampling that calibrates those thresholds.
    ``min_effect``: a floor under calibrated thresholds, by statistic, so that a huge
    window does not flag a shift too small to matter (see docs/drift.md).
    ``statistics``: force a statistic per feature kind (``numeric``/``categorical``)
    instead of the default table.
    """

    __test__ = False  # not a pytest class

    alpha: float = 0.05
    small_sample: int = 1000
    rounds: int = 200
    seed: int = 0
    min_effect: Mapping[str, float] = field(
        default_factory=lambda: {"wasserstein": 0.1, "jensen_shannon": 0.05, "psi": 0.1}
    )
    statistics: Mapping[str, str] = field(default_factory=dict)

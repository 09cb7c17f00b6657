"""What a drift test answers (``DriftStat``) and the settings every test decision uses.

A test's ``threshold`` is compared with its p-value when it has one (drifted when
``p_value < threshold``; the threshold is then alpha corrected for the number of tests)
and with its score otherwise (drifted when ``score > threshold``; the threshold is then
calibrated on the reference for the current window's size, see ``drift.calibration``).

A p-value test reports its ``effect`` size (``EFFECT_SIZES`` names what each test
measures), and may also need a shift of some size: ``min_effect`` is then the floor its
``effect`` had to exceed as well, so that a huge window, where every p-value is tiny,
does not flag a shift too small to matter. For a score test the floor is part of its
``threshold`` instead.
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
    effect: float | None = None
    min_effect: float | None = None

    @property
    def compares(self) -> Literal["p_value", "score"]:
        return "score" if self.p_value is None else "p_value"


#: What ``min_effect`` floors for the tests decided by a p-value, as reports name it.
EFFECT_SIZES = {"ks": "D", "chi_square": "Cramér's V", "missing_share": "|change|"}


def effect_text(result: DriftStat) -> str:
    """A p-value test's effect size in words, beside the floor it was also held to when it
    had one (``D 0.02648 <= min_effect.ks 0.1``, or ``D 0.02648``); "" for a score test."""
    if result.effect is None:
        return ""
    name = EFFECT_SIZES.get(result.statistic, "effect size")
    if result.min_effect is None:
        return f"{name} {result.effect:.4g}"
    relation = ">" if result.effect > result.min_effect else "<="
    return (
        f"{name} {result.effect:.4g} {relation} min_effect.{result.statistic} {result.min_effect:g}"
    )


@dataclass(frozen=True)
class TestSettings:
    """How drift is decided.

    ``alpha``: the family-wise false-alarm rate per window, over all tests of one model
    version together (Bonferroni: each of m tests runs at ``alpha / m``).
    ``small_sample``: windows of at most this many rows use the p-value tests (KS,
    chi-square); larger ones the effect-size scores (Wasserstein, Jensen-Shannon) with
    thresholds calibrated on the reference.
    ``rounds`` / ``seed``: the resampling that calibrates those thresholds.
    ``min_effect``: by statistic, the size of shift that matters, so that a huge window
    does not flag a shift too small to: a floor under calibrated thresholds, and for the
    p-value tests an effect size to exceed as well (``EFFECT_SIZES``; docs/drift.md).
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

"""The explain job's methods over one model version's sampled traffic (``explain.traffic``),
within a time budget: which run, how permutation importance is scored, and what is said
about it. ``explain.job`` asks the runtime, compares and publishes.

Permutation importance (``explain.permutation``) runs first, a fixed cost of
``rows x (1 + features x repeats)`` predicted rows. It is scored by accuracy against
integer labels (a probability output is thresholded at 0.5; a few stray non-integer labels
are left out: ``explain.labels``), by mean absolute error against other numeric labels,
else by the change in prediction. Then mean absolute Kernel SHAP (``explain.kernel_shap``)
over as many sampled rows as the rest of the budget allows, as estimated from its first
``PROBE_ROWS`` (``explain.budget.explain_within_budget``), against the traffic's
background; ``n_samples`` is raised to the fewest the version's features need, with a
warning once per version and process.

The reference importance is the same methods over rows drawn from the version's reference
profile (no labels), computed once per profile and kept in memory. Stray labels left out,
and a permutation scoring other than the previous run's, are logged as warnings, with the
reason: the importance changes scale and is not compared with the previous run's.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import replace

import numpy as np

from drift.sampling import sample_inputs
from explain.attributions import Importance
from explain.budget import ExplainBudget, explain_within_budget
from explain.frame import Frame, PredictFn
from explain.kernel_shap import kernel_shap, min_samples
from explain.labels import STRAY_LABEL_SHARE, why_scored
from explain.permutation import Metric, permutation_importance
from explain.results import MethodResult
from explain.settings import ExplainJobSettings
from explain.traffic import Traffic

log = logging.getLogger("driftgate.explain")


class ExplainMethods:
    """The configured methods, and what they keep across runs: the reference importance of
    each profile, the versions already warned of a raised ``n_samples``."""

    def __init__(
        self, settings: ExplainJobSettings, *, timer: Callable[[], float] = time.perf_counter
    ) -> None:
        self.settings = settings
        self.timer = timer
        # Reference importance per (model, version, profile id): a profile never changes.
        self._reference_importance: dict[tuple[str, str, str], dict[str, Importance]] = {}
        # Versions whose n_samples was raised and said so: once per process is enough.
        self._raised_samples: set[tuple[str, str]] = set()

    def explain(self, predict: PredictFn, traffic: Traffic, budget_s: float) -> list[MethodResult]:
        """Every configured method over ``traffic.rows``, in the configured order."""
        settings = self.settings
        started = self.timer()
        found: dict[str, MethodResult] = {}
        if "permutation" in settings.methods:  # first: a fixed cost, not budgeted
            importance = permutation_importance(
                predict,
                traffic.rows,
                labels=traffic.labels,
                metric=_metric(traffic.labels),
                repeats=settings.repeats,
            )
            found["permutation"] = MethodResult(importance, rows=_rows(traffic.rows))
        left = budget_s - (self.timer() - started)
        if "kernel_shap" in settings.methods and left > 0:
            n_samples = self._n_samples(traffic)
            budget = ExplainBudget(
                max_rows=settings.rows,
                background_rows=settings.background_rows,
                n_samples=n_samples,
                time_limit_s=left,
            )
            attribution = explain_within_budget(
                lambda chunk: kernel_shap(predict, chunk, traffic.background, n_samples=n_samples),
                traffic.rows,
                budget,
                clock=self.timer,
            )
            found["kernel_shap"] = MethodResult(
                attribution.global_importance(),
                rows=int(attribution.detail["rows_explained"]),
                attribution=attribution,
                detail=dict(attribution.detail),
            )
        elif "kernel_shap" in settings.methods:
            log.warning(
                "no time left for Kernel SHAP of %s version %s", traffic.model, traffic.version
            )
        return [found[method] for method in settings.methods if method in found]

    def reference(
        self, predict: PredictFn, traffic: Traffic, budget_s: float
    ) -> dict[str, Importance]:
        """The configured methods over rows drawn from the profile (no labels), once."""
        assert traffic.reference is not None
        reference_id, profile = traffic.reference
        key = (traffic.model, traffic.version, reference_id)
        if key not in self._reference_importance:
            rows = sample_inputs(profile, self.settings.rows, seed=1)
            drawn = replace(traffic, rows=rows, labels=None)
            found = {r.method: r.importance for r in self.explain(predict, drawn, budget_s)}
            if len(found) < len(self.settings.methods):  # out of time: try again next run
                return found
            self._reference_importance[key] = found
        return self._reference_importance[key]

    def note_scoring(
        self,
        traffic: Traffic,
        results: list[MethodResult],
        previous: dict[str, Importance],
    ) -> None:
        """Warn of stray labels left out, and of a permutation scoring that is not the
        previous run's: the importance's scale changes, and nothing compares it with the
        previous run's (``shift_vs_previous`` is null this once)."""
        kinds = traffic.label_kinds
        name = f"{traffic.model} version {traffic.version}"
        if kinds.left_out:
            log.warning(
                "explain %s: %d of %d numeric labels are not whole numbers (such as %g): "
                "left out as strays (at most %g%% of the labels), so the permutation "
                "importance is scored by accuracy against the other labels",
                name,
                kinds.non_integer,
                kinds.numeric,
                kinds.example,
                STRAY_LABEL_SHARE * 100,
            )
        now = next((r.importance for r in results if r.method == "permutation"), None)
        before = previous.get("permutation")
        if now is None or before is None or now.scoring == before.scoring:
            return
        log.warning(
            "explain %s: permutation importance is scored by %s now, by %s in the previous "
            "run, because %s; driftgate_feature_importance changes scale and this run has no "
            "shift_vs_previous",
            name,
            now.scoring,
            before.scoring,
            why_scored(now.scoring, kinds, self.settings.min_rows),
        )

    def _n_samples(self, traffic: Traffic) -> int:
        """``n_samples``, raised to the fewest Kernel SHAP can work with on this version's
        features: the feature count is known only now, and refusing would fail the version
        on every run. The time budget still bounds the cost (fewer rows get explained)."""
        configured, n_features = self.settings.n_samples, len(traffic.rows)
        needed = min_samples(n_features)
        if configured >= needed:
            return configured
        key = (traffic.model, traffic.version)
        if key not in self._raised_samples:
            self._raised_samples.add(key)
            log.warning(
                "explain.n_samples %d is too few for the %d input features of %s version %s: "
                "Kernel SHAP needs at least %d coalitions per row, so it uses %d "
                "(set explain.n_samples to %d or more to silence this)",
                configured,
                n_features,
                traffic.model,
                traffic.version,
                needed,
                needed,
                needed,
            )
        return needed


def _metric(labels: np.ndarray | None) -> Metric | None:
    if labels is None:
        return None
    return "accuracy" if labels.dtype.kind in "iu" else "neg_mae"


def _rows(frame: Frame) -> int:
    return len(next(iter(frame.values())))

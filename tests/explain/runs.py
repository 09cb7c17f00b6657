"""A hand-built ``ExplainRun`` for the tests of the explain outputs (rows, entry, report):
permutation importance scored by accuracy, compared with a previous run, and Kernel SHAP
with its per-row attributions, compared with the reference too."""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np

from explain.attributions import Attribution, Importance
from explain.results import Comparison, ExplainRun, MethodResult

RUN_TIME = datetime(2025, 3, 14, 9, 30, tzinfo=UTC)
FEATURES = ("fare", "sex", "pclass")


def make_run(*, feature_names: tuple[str, ...] = FEATURES, run_id: str = "run-0001") -> ExplainRun:
    permutation = Importance(
        features=feature_names,
        importance=np.array([0.01, 0.20, -0.02]),
        std=np.array([0.005, 0.03, 0.01]),
        method="permutation",
        scoring="accuracy",
        baseline_score=0.81,
    )
    rng = np.random.default_rng(3)
    values = rng.normal(0.0, [0.02, 0.2, 0.1], size=(40, 3))
    attribution = Attribution(
        features=feature_names,
        values=values,
        base_value=0.38,
        predictions=0.38 + values.sum(axis=1),
        method="kernel_shap",
        detail={"rows_offered": 50, "rows_explained": 40},
    )
    shap = attribution.global_importance()
    first, second, third = feature_names
    return ExplainRun(
        run_id=run_id,
        timestamp=RUN_TIME,
        model="titanic",
        version="1",
        window_rows=2000,
        labelled_rows=600,
        reference_id="profile-20250101T000000.000000Z.json",
        replica="http://127.0.0.1:8001",
        output="probability",
        methods=(
            MethodResult(
                permutation,
                rows=50,
                previous=Comparison(
                    "previous", {first: 0.01, second: -0.02, third: 0.01}, rank_correlation=0.5
                ),
            ),
            MethodResult(
                shap,
                rows=40,
                previous=None,
                reference=Comparison(
                    "reference", {first: -0.1, second: 0.15, third: -0.05}, rank_correlation=1.0
                ),
                attribution=attribution,
            ),
        ),
        predict_calls=7,
        predicted_rows=31_000,
        elapsed_s=2.5,
        time_limit_s=30.0,
    )

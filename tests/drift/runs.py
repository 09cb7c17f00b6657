"""Hand-built ``DriftRun`` values for the tests of the drift outputs (rows, gauges, report,
alerts): a realistic run with a numeric and a categorical input, a numeric output, and a
multivariate finding without distributions; the categorical input has drifted.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np

from drift.distributions import (
    categorical_counts,
    categorical_reference,
    numeric_counts,
    numeric_reference,
)
from drift.findings import MULTIVARIATE, DriftRun, FeatureFinding, Window
from drift.verdict import DriftStat

RUN_TIME = datetime(2025, 3, 14, 9, 30, tzinfo=UTC)
WINDOW_SQL = (
    "SELECT in_age, in_sex, out_probability FROM predictions\n"
    "WHERE model = 'titanic' AND version = '2' AND arm = 'primary'\n"
    "  AND \"timestamp\" >= TIMESTAMPTZ '2025-03-14 08:30:00+00'"
)


def make_run(
    *,
    model: str = "titanic",
    version: str = "2",
    arm: str = "primary",
    run_id: str = "run-0001",
    timestamp: datetime = RUN_TIME,
    categorical_feature: str = "sex",
    categorical_drifted: bool = True,
    report: str | None = None,
) -> DriftRun:
    """A run whose categorical input ``categorical_feature`` drifted (unless told not)."""
    rng = np.random.default_rng(7)
    ages = rng.normal(35, 12, 2_000)
    ages[:40] = np.nan
    age_reference = numeric_reference(ages, bins=8)
    current_ages = rng.normal(36, 12, 500)
    age_current = age_reference.with_counts(numeric_counts(current_ages, age_reference.edges), 5)

    sexes = rng.choice(["male", "female"], size=2_000, p=[0.64, 0.36])
    sex_reference = categorical_reference(list(sexes))
    shifted = rng.choice(["male", "female", "unknown"], size=500, p=[0.3, 0.6, 0.1])
    sex_current = sex_reference.with_counts(
        categorical_counts(list(shifted), sex_reference.categories), 0
    )

    probabilities = rng.beta(2, 5, 2_000)
    probability_reference = numeric_reference(probabilities, bins=5)
    probability_current = probability_reference.with_counts(
        numeric_counts(rng.beta(2, 5, 500), probability_reference.edges), 0
    )

    findings = (
        FeatureFinding(
            feature="age",
            column="in_age",
            kind="numeric",
            role="input",
            result=DriftStat("ks", 0.041, 0.52, threshold=0.0125, drifted=False),
            psi=0.012,
            reference=age_reference,
            current=age_current,
        ),
        FeatureFinding(
            feature=categorical_feature,
            column=f"in_{categorical_feature}",
            kind="categorical",
            role="input",
            result=DriftStat(
                "chi_square",
                181.7,
                1.2e-9 if categorical_drifted else 0.4,
                threshold=0.0125,
                drifted=categorical_drifted,
            ),
            psi=0.41 if categorical_drifted else 0.01,
            reference=sex_reference,
            current=sex_current,
            detail="values never seen in the reference are counted as __other__",
        ),
        FeatureFinding(
            feature="probability",
            column="out_probability",
            kind="numeric",
            role="output",
            result=DriftStat("wasserstein", 0.03, None, threshold=0.1, drifted=False),
            psi=0.004,
            reference=probability_reference,
            current=probability_current,
        ),
        FeatureFinding(
            feature=MULTIVARIATE,
            column="",
            kind="multivariate",
            role="joint",
            result=DriftStat("pca_reconstruction", float("nan"), None, 0.2, drifted=False),
            detail="window too small for the joint test",
        ),
    )
    return DriftRun(
        run_id=run_id,
        timestamp=timestamp,
        model=model,
        version=version,
        arm=arm,
        window=Window(kind="time", start=timestamp - timedelta(hours=1), end=timestamp, rows=505),
        reference_id="titanic-2-20250301.json",
        reference_rows=2_000,
        findings=findings,
        sql=WINDOW_SQL,
        report=report,
    )

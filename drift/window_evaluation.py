"""What one drift check computes: every test of a window against the reference profile.

Given a window of the log (``drift.window``: its bounds, then one SQL scan into histograms
over the reference's bins), :func:`evaluate_window` runs the tests of a check and returns
the ``DriftRun`` (``drift.findings``): one test per input feature and output, picked by the
default table (``drift.calibration``), a missing-share test where the reference or the
window has missing values (``drift.missing``), all at alpha corrected for their number
(Bonferroni), the joint PCA test (``drift.multivariate``), and, once ``min_labels`` labelled
rows exist, realised performance against the reference's plus Page-Hinkley on the error
stream (:func:`performance_findings`, ``drift.sequential``).

It reads the store and writes nothing: ``drift.job.DriftJob`` picks what to check, calls
this, and publishes the run (report, result rows, latest results, webhook).
"""

from __future__ import annotations

import math
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

import duckdb
import numpy as np

from drift.calibration import evaluate
from drift.distributions import Distribution
from drift.findings import (
    MULTIVARIATE,
    PERFORMANCE,
    SEQUENTIAL,
    DriftRun,
    FeatureFinding,
    Window,
)
from drift.missing import missing_share_drift, needs_missing_test
from drift.multivariate import pca_drift
from drift.profile import FeatureProfile, ReferenceProfile
from drift.sequential import first_alarm, performance_drift
from drift.settings import DriftSettings
from drift.stats import psi
from drift.verdict import DriftStat, TestSettings, effect_text
from drift.window import labelled_errors, sample_columns, scan_window

Clock = Callable[[], datetime]


@dataclass(frozen=True, slots=True)
class Slice:
    """What one check is about: a model version as served in one A/B arm."""

    model: str
    version: str
    arm: str


def evaluate_window(
    con: duckdb.DuckDBPyConnection,
    profile: ReferenceProfile,
    reference_id: str,
    target: Slice,
    window: Window,
    *,
    settings: DriftSettings,
    tests: TestSettings,
    clock: Clock,
) -> DriftRun:
    """Every test of one window against the reference ``profile``, as a run dated by
    ``clock`` when the tests are done (nothing written yet: ``DriftJob.publish``)."""
    model, version, arm = target.model, target.version, target.arm
    scan = scan_window(con, profile, model, version, arm, window)
    joint = profile.multivariate is not None and settings.multivariate
    pairs = [(f, f.distribution, scan.distributions[f.column]) for f in profile.features]
    missing_tests = {f.column for f, ref, cur in pairs if needs_missing_test(ref, cur)}
    n_tests = len(pairs) + len(missing_tests) + (1 if joint else 0)
    findings: list[FeatureFinding] = []
    for feature, reference, current in pairs:
        result = evaluate(reference, current, n_tests, tests)
        findings.append(
            FeatureFinding(
                feature=feature.name,
                column=feature.column,
                kind=reference.kind,
                role=feature.role,
                result=result,
                psi=psi(reference, current) if current.rows else None,
                reference=reference,
                current=current,
                detail=effect_text(result),
            )
        )
        if feature.column in missing_tests:
            findings.append(_missing_finding(feature, reference, current, n_tests, tests))
    if joint and profile.multivariate is not None:
        sample = sample_columns(con, profile, model, version, arm, window)
        result = pca_drift(profile.multivariate, sample, n_tests, tests)
        findings.append(
            FeatureFinding(
                feature=MULTIVARIATE,
                column="",
                kind="multivariate",
                role="joint",
                result=result,
                detail=(
                    "PCA reconstruction error of the inputs together, relative to the "
                    f"reference's held-out error (sample of {_rows(sample)} rows)"
                ),
            )
        )
    findings.extend(
        performance_findings(con, profile, target, window, settings=settings, tests=tests)
    )
    now = clock()
    return DriftRun(
        run_id=f"{now.strftime('%Y%m%dT%H%M%SZ')}-{uuid.uuid4().hex[:8]}",
        timestamp=now,
        model=model,
        version=version,
        arm=arm,
        window=scan.window,
        reference_id=reference_id,
        reference_rows=profile.rows,
        findings=tuple(findings),
        sql=scan.sql,
    )


def performance_findings(
    con: duckdb.DuckDBPyConnection,
    profile: ReferenceProfile,
    target: Slice,
    window: Window,
    *,
    settings: DriftSettings,
    tests: TestSettings,
) -> list[FeatureFinding]:
    """Realised performance and the sequential detector, once enough labels exist."""
    reference = profile.performance
    if reference is None:
        return []
    errors = labelled_errors(con, reference, target.model, target.version, target.arm, window)
    if errors.size < settings.min_labels:
        return []
    mean = float(errors.mean())
    std = math.sqrt(mean * (1 - mean)) if reference.metric == "error_rate" else errors.std()
    result = performance_drift(
        reference.n,
        reference.mean,
        reference.std,
        int(errors.size),
        mean,
        float(std),
        1,  # its own family: it is not one of the feature tests
        tests,
    )
    alarm = first_alarm(errors)
    sequential = DriftStat(
        statistic="page_hinkley",
        score=float(alarm if alarm is not None else -1),
        p_value=None,
        threshold=0.0,
        drifted=alarm is not None,
    )
    label = reference.metric.replace("_", " ")
    return [
        FeatureFinding(
            feature=PERFORMANCE,
            column=reference.prediction,
            kind="performance",
            role="label",
            result=result,
            detail=(
                f"{label}: {mean:.4f} over {errors.size} labelled rows; "
                f"reference {reference.mean:.4f} over {reference.n}"
            ),
        ),
        FeatureFinding(
            feature=SEQUENTIAL,
            column=reference.prediction,
            kind="sequential",
            role="label",
            result=sequential,
            detail=(
                f"Page-Hinkley on the {label} stream: "
                + (f"alarm at labelled row {alarm}" if alarm is not None else "no alarm")
            ),
        ),
    ]


def _missing_finding(
    feature: FeatureProfile,
    reference: Distribution,
    current: Distribution,
    n_tests: int,
    tests: TestSettings,
) -> FeatureFinding:
    result = missing_share_drift(reference, current, n_tests, tests)
    shares = (
        f"missing values: {reference.missing / max(reference.rows, 1):.1%} of the reference, "
        f"{current.missing / max(current.rows, 1):.1%} of the window"
    )
    floor = effect_text(result)
    return FeatureFinding(
        feature=f"{feature.name}:missing",
        column=feature.column,
        kind="numeric",
        role=feature.role,
        result=result,
        detail=f"{shares}; {floor}" if floor else shares,
    )


def _rows(columns: dict[str, np.ndarray]) -> int:
    return len(next(iter(columns.values()))) if columns else 0

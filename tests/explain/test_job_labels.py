"""Labels and how the explain job scores permutation importance: a stray non-integer label
is left out rather than changing the scoring, and a real change of scoring is a warning
naming both scorings and why."""

from __future__ import annotations

import logging
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from opentelemetry import trace
from prometheus_client import CollectorRegistry

from explain.job import ExplainJob
from explain.settings import ExplainJobSettings
from monitoring.prediction_log import FeedbackRecord, LogSettings, PredictionLogWriter, run_sql
from tests.explain.linear6 import DOC, NOW, Runtime


def _label(store: Path, labels: dict[int, float]) -> None:
    """Feedback for rows of version 1 (``r-1-<i>``), by row number."""
    writer = PredictionLogWriter(store, LogSettings(store=str(store)), CollectorRegistry())
    writer.start()
    writer.submit(
        [
            FeedbackRecord(request_id=f"r-1-{i}", row=None, label=label, timestamp=NOW)
            for i, label in labels.items()
        ]
    )
    writer.close()


def _labelled_job(store: Path, runtime: Runtime) -> ExplainJob:
    """Every labelled row sampled (up to 40), so a stray label is in the sample."""
    settings = ExplainJobSettings(
        rows=40, min_rows=10, background_rows=5, repeats=2, time_limit_s=60
    )
    return ExplainJob(
        store,
        settings,
        store.parent / "models",
        [runtime.url],
        trace.NoOpTracer(),
        clock=lambda: NOW,
    )


def _permutation_rows(store: Path) -> list[tuple[Any, ...]]:
    """(scoring, shift_vs_previous is null) of the permutation rows, by run, oldest first."""
    return run_sql(
        store,
        "select distinct timestamp, scoring, shift_vs_previous is null from explanations "
        "where method = 'permutation' order by timestamp",
    ).rows


def test_one_stray_non_integer_label_is_left_out_not_a_change_of_scoring(
    store: Path, runtime: Runtime, caplog: pytest.LogCaptureFixture
) -> None:
    """One 0.7 among 0/1 labels made the run score by mean absolute error, silently: a
    new scale for driftgate_feature_importance, and no shift against the previous run."""
    _label(store, {i: float(i % 2) for i in range(39)} | {39: 0.7})
    job = _labelled_job(store, runtime)
    with caplog.at_level(logging.WARNING, logger="driftgate.explain"):
        job.run()

    assert [row[1] for row in _permutation_rows(store)] == ["accuracy"]
    stray = [r.getMessage() for r in caplog.records if "strays" in r.getMessage()]
    assert stray == [
        "explain linear6 version 1: 1 of 40 numeric labels are not whole numbers (such as "
        "0.7): left out as strays (at most 5% of the labels), so the permutation importance "
        "is scored by accuracy against the other labels"
    ]
    assert stray[0] in DOC.read_text()  # the line docs/explain.md shows


def test_a_change_of_scoring_is_a_warning_naming_both_and_why(
    store: Path, runtime: Runtime, caplog: pytest.LogCaptureFixture
) -> None:
    _label(store, {i: float(i % 2) for i in range(40)})
    job = _labelled_job(store, runtime)
    job.run()
    _label(store, dict.fromkeys(range(40, 50), 0.5))  # 10 of 50: numbers, not strays
    job.clock = lambda: NOW + timedelta(seconds=1)  # a later run
    with caplog.at_level(logging.WARNING, logger="driftgate.explain"):
        job.run()

    runs = _permutation_rows(store)
    assert [(scoring, unshifted) for _, scoring, unshifted in runs] == [
        ("accuracy", True),  # no previous run
        ("neg_mae", True),  # not comparable with the previous run's accuracy
    ]
    changed = [r.getMessage() for r in caplog.records if "scored by neg_mae now" in r.getMessage()]
    assert changed == [
        "explain linear6 version 1: permutation importance is scored by neg_mae now, by "
        "accuracy in the previous run, because 10 of 50 numeric labels are not whole numbers "
        "(such as 0.5), more than the 5% left out as strays; driftgate_feature_importance "
        "changes scale and this run has no shift_vs_previous"
    ]
    assert [r.levelno for r in caplog.records if r.getMessage() in changed] == [logging.WARNING]
    assert changed[0] in DOC.read_text()

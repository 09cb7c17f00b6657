"""An explain run as a value, as rows in the store (``explanations``) and as the latest entry
the gauges read: the durable outputs of ``explain.job``, after it has built an ``ExplainRun``.

    <store>/explanations/model=<m>/date=<YYYY-MM-DD>/<utc-timestamp>-<uuid>.parquet

One row per (method, feature), columns ``EXPLANATION_SCHEMA``: the importance and its std
over repeats (permutation) or rows (Kernel SHAP), the feature's share of the method's total
importance, its rank (1 = most important), and the change of its share since the previous
run of the model version and against the reference (``explain.drift.importance_shift``;
null when there is nothing comparable). The catalog's ``explanations`` view reads the tree.

``publish_latest`` merges the run into ``<store>/latest/explain.json`` under
``<model>/<version>``. Beside the keys ``JobResultsCollector`` reads (``features``: the
first method's importance, exported as ``driftgate_feature_importance``), the entry keeps
every method's importances by feature (``methods``) so that the next run, even after a
restart, can compute its shift against this one (``previous_importances``,
``with_comparisons``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa  # type: ignore[import-untyped]  # no stubs; see pyproject mypy overrides

from drift.results import as_utc
from explain.attributions import Attribution, Importance
from explain.drift import importance_shift, rank_correlation
from monitoring.job_results import read_latest, update_latest
from monitoring.prediction_log.layout import (
    EXPLANATIONS,
    partition_dir,
    segment_name,
    write_segment,
)
from monitoring.prediction_log.segments import EXPLANATION_SCHEMA


@dataclass(frozen=True)
class Comparison:
    """How one method's importance moved against an earlier one (``explain.drift``)."""

    against: str  # "previous" or "reference"
    shift: dict[str, float]  # per feature: share now minus share then
    rank_correlation: float  # Spearman; NaN when undefined


@dataclass(frozen=True)
class MethodResult:
    """One method's global importance over the explained rows, and how it moved."""

    importance: Importance
    rows: int
    previous: Comparison | None = None
    reference: Comparison | None = None
    attribution: Attribution | None = None  # Kernel SHAP's per-row values, for the report
    detail: dict[str, Any] = field(default_factory=dict)

    @property
    def method(self) -> str:
        return self.importance.method


@dataclass(frozen=True)
class ExplainRun:
    """Everything one explain check of a model version found, and what it cost."""

    run_id: str
    timestamp: datetime
    model: str
    version: str
    window_rows: int
    labelled_rows: int
    reference_id: str | None
    replica: str
    output: str
    methods: tuple[MethodResult, ...]
    predict_calls: int
    predicted_rows: int
    elapsed_s: float
    time_limit_s: float
    report: str | None = None

    @property
    def primary(self) -> MethodResult:
        """The first method's result: the one the gauge exports."""
        return self.methods[0]


def explanation_table(run: ExplainRun) -> pa.Table:
    """One row per method and feature of ``run``, in ``EXPLANATION_SCHEMA``."""
    rows: dict[str, list[Any]] = {name: [] for name in EXPLANATION_SCHEMA.names}
    for result in run.methods:
        importance = result.importance
        shares = importance.shares()
        ranks = {name: position + 1 for position, name in enumerate(importance.ranking())}
        for j, feature in enumerate(importance.features):
            rows["timestamp"].append(as_utc(run.timestamp))
            rows["run_id"].append(run.run_id)
            rows["version"].append(run.version)
            rows["feature"].append(feature)
            rows["method"].append(importance.method)
            rows["scoring"].append(importance.scoring)
            rows["importance"].append(float(importance.importance[j]))
            rows["std"].append(float(importance.std[j]))
            rows["share"].append(shares[feature])
            rows["rank"].append(ranks[feature])
            rows["shift_vs_previous"].append(_shift(result.previous, feature))
            rows["shift_vs_reference"].append(_shift(result.reference, feature))
            rows["rows"].append(result.rows)
            rows["report"].append(run.report)
    return pa.table(
        [pa.array(rows[f.name], f.type) for f in EXPLANATION_SCHEMA], schema=EXPLANATION_SCHEMA
    )


def write_explanations(store: Path, run: ExplainRun) -> Path:
    """Write ``run`` as one segment of the ``explanations`` tree; returns its path."""
    started = as_utc(run.timestamp)
    final = partition_dir(store, EXPLANATIONS, run.model, started.date()) / segment_name(started)
    write_segment(store, explanation_table(run), final)
    return final


def latest_key(model: str, version: str) -> str:
    """The run's key in the latest-results file: ``<model>/<version>``."""
    return f"{model}/{version}"


def latest_entry(run: ExplainRun) -> dict[str, Any]:
    """The run as an explain entry of the latest-results file (``monitoring.job_results``);
    JSON has no NaN, so what is not a number is written as null."""
    primary = run.primary.importance
    return {
        "model": run.model,
        "version": run.version,
        "timestamp": as_utc(run.timestamp).isoformat(),
        "run_id": run.run_id,
        "report": run.report,
        "method": primary.method,
        "scoring": primary.scoring,
        "features": [
            {"feature": name, "importance": _finite_or_none(value)}
            for name, value in primary.as_dict().items()
        ],
        "methods": {
            result.method: {
                "scoring": result.importance.scoring,
                "rows": result.rows,
                "importance": {
                    name: _finite_or_none(value)
                    for name, value in result.importance.as_dict().items()
                },
                "rank_correlation_vs_previous": _correlation(result.previous),
                "rank_correlation_vs_reference": _correlation(result.reference),
            }
            for result in run.methods
        },
    }


def publish_latest(store: Path, run: ExplainRun) -> None:
    """Merge ``run`` into ``<store>/latest/explain.json`` under its model/version key."""
    update_latest(store, "explain", latest_key(run.model, run.version), latest_entry(run))


def previous_importances(store: Path, model: str, version: str) -> dict[str, Importance]:
    """Each method's importance as the version's latest entry recorded it (std is not
    kept: zeros); empty without an entry, or with one that cannot be read."""
    try:
        entry = read_latest(store, "explain").get(latest_key(model, version), {})
    except ValueError:  # a corrupt file: nothing to compare with
        return {}
    return importances_of(entry)


def importances_of(entry: Mapping[str, Any]) -> dict[str, Importance]:
    """The importances of a latest explain entry, by method (see ``previous_importances``)."""
    found: dict[str, Importance] = {}
    methods = entry.get("methods")
    if not isinstance(methods, Mapping):
        return found
    for method, recorded in methods.items():
        try:
            by_feature = {
                str(name): math.nan if value is None else float(value)
                for name, value in recorded["importance"].items()
            }
            found[str(method)] = Importance(
                features=tuple(by_feature),
                importance=np.asarray(list(by_feature.values()), dtype=np.float64),
                std=np.zeros(len(by_feature)),
                method=str(method),
                scoring=str(recorded["scoring"]),
                baseline_score=None,
            )
        except (KeyError, TypeError, ValueError, AttributeError):
            continue
    return found


def with_comparisons(
    results: Sequence[MethodResult],
    *,
    previous: Mapping[str, Importance],
    reference: Mapping[str, Importance],
) -> list[MethodResult]:
    """``results`` with their shifts against the previous run's and the reference's
    importance of the same method; none where the scoring differs (a drop in accuracy
    and a change in prediction are not on one scale)."""
    return [
        replace(
            result,
            previous=compare("previous", previous.get(result.method), result.importance),
            reference=compare("reference", reference.get(result.method), result.importance),
        )
        for result in results
    ]


def compare(against: str, earlier: Importance | None, current: Importance) -> Comparison | None:
    """How ``current`` moved from ``earlier`` (``explain.drift``); None when not comparable."""
    if earlier is None or earlier.scoring != current.scoring:
        return None
    shift = importance_shift(earlier, current)
    return Comparison(against, shift, rank_correlation(earlier, current))


def _shift(comparison: Comparison | None, feature: str) -> float | None:
    if comparison is None:
        return None
    value = comparison.shift.get(feature)
    return None if value is None or not math.isfinite(value) else float(value)


def _correlation(comparison: Comparison | None) -> float | None:
    return None if comparison is None else _finite_or_none(comparison.rank_correlation)


def _finite_or_none(value: float | None) -> float | None:
    if value is None or not math.isfinite(value):
        return None
    return float(value)

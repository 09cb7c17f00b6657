"""An explain run as ``explanations`` rows and as the latest entry the gauge reads."""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

import numpy as np
import pytest

from explain.results import (
    compare,
    explanation_table,
    latest_entry,
    previous_importances,
    publish_latest,
    with_comparisons,
    write_explanations,
)
from monitoring.prediction_log import connect_readonly
from tests.explain.runs import make_run


def test_one_row_per_method_and_feature_with_share_rank_and_shifts() -> None:
    rows = explanation_table(make_run()).to_pylist()
    permutation = {r["feature"]: r for r in rows if r["method"] == "permutation"}
    assert [
        r["rank"] for r in (permutation["sex"], permutation["fare"], permutation["pclass"])
    ] == [
        1,
        2,
        3,
    ]
    # A negative importance (shuffling helped by chance) has no share.
    assert permutation["pclass"]["share"] == 0.0
    assert permutation["sex"]["share"] == pytest.approx(0.20 / 0.21)
    assert permutation["sex"]["shift_vs_previous"] == -0.02
    assert permutation["sex"]["shift_vs_reference"] is None
    assert permutation["sex"]["scoring"] == "accuracy" and permutation["sex"]["rows"] == 50
    shap = [r for r in rows if r["method"] == "kernel_shap"]
    assert len(shap) == 3 and all(r["shift_vs_previous"] is None for r in shap)
    assert {r["rows"] for r in shap} == {40}


def test_rows_are_read_back_through_the_catalog(tmp_path: Path) -> None:
    store = tmp_path / "store"
    run = dataclasses.replace(make_run(), report="/reports/explain/titanic/1/run-0001.html")
    path = write_explanations(store, run)
    assert path.parent == store / "explanations" / "model=titanic" / "date=2025-03-14"
    con = connect_readonly(store)
    try:
        found = con.execute(
            "select model, date::varchar, feature, method, rank, report from explanations "
            "order by method, rank"
        ).fetchall()
    finally:
        con.close()
    assert found[0] == (
        "titanic",
        "2025-03-14",
        "sex",
        "kernel_shap",
        1,
        "/reports/explain/titanic/1/run-0001.html",
    )
    assert len(found) == 6


def test_the_latest_entry_exports_the_first_method_and_keeps_every_one(tmp_path: Path) -> None:
    run = make_run()
    entry = latest_entry(run)
    json.dumps(entry, allow_nan=False)  # what the latest file needs
    assert entry["method"] == "permutation"
    assert entry["features"] == [
        {"feature": "fare", "importance": 0.01},
        {"feature": "sex", "importance": 0.2},
        {"feature": "pclass", "importance": -0.02},
    ]
    assert set(entry["methods"]) == {"permutation", "kernel_shap"}
    assert entry["methods"]["permutation"]["rank_correlation_vs_previous"] == 0.5
    assert entry["methods"]["kernel_shap"]["rank_correlation_vs_previous"] is None

    publish_latest(tmp_path, run)
    previous = previous_importances(tmp_path, "titanic", "1")
    assert previous["permutation"].as_dict() == pytest.approx(run.primary.importance.as_dict())
    assert previous["kernel_shap"].scoring == "mean_abs_attribution"
    assert previous_importances(tmp_path, "titanic", "2") == {}


def test_importance_that_is_not_a_number_is_null_in_the_entry() -> None:
    run = make_run()
    nan = dataclasses.replace(run.primary.importance, importance=np.array([math.nan, 0.2, 0.1]))
    entry = latest_entry(
        dataclasses.replace(run, methods=(dataclasses.replace(run.primary, importance=nan),))
    )
    assert entry["features"][0] == {"feature": "fare", "importance": None}


def test_only_importances_of_the_same_scoring_are_compared() -> None:
    run = make_run()
    accuracy = run.primary.importance
    change = dataclasses.replace(accuracy, scoring="prediction_change")
    assert compare("reference", change, accuracy) is None
    assert compare("previous", None, accuracy) is None
    moved = dataclasses.replace(accuracy, importance=np.array([0.2, 0.01, -0.02]))
    comparison = compare("previous", moved, accuracy)
    assert comparison is not None
    assert comparison.shift["sex"] == pytest.approx(0.20 / 0.21 - 0.01 / 0.21)
    assert comparison.rank_correlation == pytest.approx(0.5)  # one swap of three

    (result,) = with_comparisons([run.primary], previous={}, reference={"permutation": moved})
    assert result.previous is None and result.reference is not None


def test_a_corrupt_latest_file_means_no_previous_run(tmp_path: Path) -> None:
    (tmp_path / "latest").mkdir()
    (tmp_path / "latest" / "explain.json").write_text("{not json")
    assert previous_importances(tmp_path, "titanic", "1") == {}


def test_an_entry_without_methods_has_no_importances(tmp_path: Path) -> None:
    from monitoring.job_results import update_latest

    old = {"model": "titanic", "version": "1", "timestamp": "2025-01-01T00:00:00+00:00"}
    update_latest(tmp_path, "explain", "titanic/1", {**old, "features": []})
    assert previous_importances(tmp_path, "titanic", "1") == {}

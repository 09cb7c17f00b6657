"""Reference profiles: what kind each column gets, how a training file becomes a profile,
how a profile survives JSON, and how profiles are kept beside the model versions."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import numpy as np
import pyarrow as pa  # type: ignore[import-untyped]
import pyarrow.parquet as pq  # type: ignore[import-untyped]
import pytest

from drift.distributions import OTHER
from drift.profile import (
    ReferenceProfile,
    build_profile,
    infer_kind,
    profile_from_file,
)
from drift.references import ReferenceStore

TITANIC = Path(__file__).parents[2] / "runtime/demo/data/titanic/titanic_reference.csv"
TITANIC_FEATURES = ["fare", "age", "sex", "embarked", "pclass"]


def mixed_columns(rows: int = 400, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    fare = rng.gamma(2.0, 10.0, rows)
    fare[::50] = np.nan
    return {
        "in_fare": fare,
        "in_sex": rng.choice(["male", "female"], rows).astype(object),
        "in_pclass": rng.integers(1, 4, rows),
        "in_alone": rng.random(rows) < 0.3,
        "out_label": rng.integers(0, 2, rows),
        "out_probability": rng.random(rows),
    }


@pytest.mark.parametrize(
    ("values", "kind"),
    [
        (np.linspace(0, 1, 11), "numeric"),  # 11 distinct numbers
        (np.arange(10), "categorical"),  # 10 distinct integers: classes
        (np.arange(100), "numeric"),
        (np.array([1.0, 2.0, np.nan, 1.0]), "categorical"),
        (np.array(["a", "b", "a"]), "categorical"),
        (np.array(["a", None, "b"], dtype=object), "categorical"),
        (np.array([True, False, True]), "categorical"),
        (np.array([1.5, None, *range(20)], dtype=object), "numeric"),
        (np.array([[1, 2], [3]], dtype=object), None),  # tensor rows: not profiled
        (np.array([None, None], dtype=object), None),  # nothing to describe
        (np.array([np.nan, np.nan]), None),
    ],
)
def test_kind_inference(values, kind):
    assert infer_kind(values) == kind


def test_list_and_empty_columns_are_skipped_and_roles_follow_prefixes():
    columns = mixed_columns()
    embedding = np.empty(400, dtype=object)  # an object array holding lists
    embedding[:] = [[0.1, 0.2]] * 400
    columns["in_embedding"] = embedding
    columns["in_nothing"] = np.full(400, np.nan)
    columns["out_score"] = np.array([None, *np.linspace(0, 1, 399)], dtype=object)
    columns["in_weight"] = columns["out_score"].copy()  # numbers and None, for the PCA too

    profile = build_profile("titanic", "1", columns, "test")

    assert [(f.column, f.name, f.role, f.distribution.kind) for f in profile.features] == [
        ("in_fare", "fare", "input", "numeric"),
        ("in_sex", "sex", "input", "categorical"),
        ("in_pclass", "pclass", "input", "categorical"),
        ("in_alone", "alone", "input", "categorical"),
        ("out_label", "label", "output", "categorical"),
        ("out_probability", "probability", "output", "numeric"),
        ("out_score", "score", "output", "numeric"),
        ("in_weight", "weight", "input", "numeric"),
    ]
    assert profile.feature("in_fare").distribution.missing == 8
    assert profile.feature("out_score").distribution.missing == 1
    assert set(profile.feature("in_alone").distribution.categories) == {"true", "false", OTHER}
    assert profile.multivariate is not None
    inputs = {"in_fare", "in_sex", "in_pclass", "in_alone", "in_weight"}
    assert set(profile.multivariate.columns) == inputs
    with pytest.raises(KeyError, match="in_embedding"):
        profile.feature("in_embedding")


def test_columns_need_a_store_prefix():
    with pytest.raises(ValueError, match="'fare'"):
        build_profile("titanic", "1", {"fare": np.arange(20.0)}, "test")


def test_an_empty_source_makes_no_profile():
    """A header-only CSV wrote a 0-row profile; being the newest, it silenced every test."""
    with pytest.raises(ValueError, match=r"no rows to profile in empty\.csv"):
        build_profile("m", "1", {"in_x": np.array([])}, "empty.csv")
    with pytest.raises(ValueError, match=r"no column of lists\.csv can be profiled"):
        build_profile("m", "1", {"in_x": np.array([[1, 2]], dtype=object)}, "lists.csv")


def test_no_pca_detector_below_200_rows_or_with_one_input():
    columns = mixed_columns(rows=150)
    assert build_profile("titanic", "1", columns, "test").multivariate is None
    one_input = {"in_fare": mixed_columns()["in_fare"], "out_label": mixed_columns()["out_label"]}
    assert build_profile("titanic", "1", one_input, "test").multivariate is None


def test_performance_reference_is_an_error_rate_for_classes_and_mae_for_numbers():
    columns = mixed_columns()
    labels = columns["out_label"].astype(object)
    labels[:100] = 1 - columns["out_label"][:100]  # wrong on the first 100 rows
    labels[-50:] = None  # not labelled: left out

    classes = build_profile(
        "titanic", "1", columns, "test", labels=labels, prediction="out_label"
    ).performance
    assert classes is not None
    assert (classes.metric, classes.prediction, classes.n) == ("error_rate", "out_label", 350)
    assert classes.mean == pytest.approx(100 / 350)
    assert classes.std == pytest.approx(math.sqrt(100 / 350 * 250 / 350))

    truth = columns["out_probability"] + 0.25
    numbers = build_profile(
        "titanic", "1", columns, "test", labels=truth, prediction="out_probability"
    ).performance
    assert numbers is not None
    assert numbers.metric == "mean_absolute_error"
    assert numbers.mean == pytest.approx(0.25)
    assert numbers.std == pytest.approx(0.0, abs=1e-12)


def test_profile_round_trips_through_json():
    columns = mixed_columns()
    profile = build_profile(
        "titanic",
        "1",
        columns,
        "file:train.csv",
        labels=columns["out_label"],
        prediction="out_label",
    )

    text = json.dumps(profile.to_dict())
    restored = ReferenceProfile.from_dict(json.loads(text))

    assert json.loads(text)["format"] == 1
    assert restored.to_dict() == profile.to_dict()
    assert restored.created == profile.created
    assert restored.created.tzinfo is not None
    assert restored.performance == profile.performance
    assert restored.multivariate is not None
    np.testing.assert_array_equal(
        restored.multivariate.components,
        profile.multivariate.components,  # type: ignore[union-attr]
    )


def test_an_unknown_format_is_refused_with_what_to_do():
    data = build_profile("titanic", "1", mixed_columns(), "test").to_dict()
    data["format"] = 2
    with pytest.raises(ValueError, match="rebuild the profile"):
        ReferenceProfile.from_dict(data)


def titanic_rows() -> list[dict[str, str]]:
    with TITANIC.open(newline="") as file:
        return list(csv.DictReader(file))


def test_profile_from_the_titanic_training_file():
    rows = titanic_rows()
    survived = np.array([int(r["Survived"]) for r in rows])
    # The "model": women survive. Its error rate is known from the file itself.
    said = np.array([1 if r["Sex"] == "female" else 0 for r in rows])

    profile = profile_from_file(
        TITANIC,
        "titanic",
        "1",
        label="Survived",
        features=TITANIC_FEATURES,
        prediction_columns={"out_label": said},
    )

    assert profile.source == "file:titanic_reference.csv"
    assert profile.rows == len(rows)
    kinds = {f.column: f.distribution.kind for f in profile.features}
    assert kinds == {
        "in_fare": "numeric",
        "in_age": "numeric",
        "in_sex": "categorical",
        "in_embarked": "categorical",
        "in_pclass": "categorical",
        "out_label": "categorical",
    }
    age = profile.feature("in_age").distribution
    assert age.missing == sum(1 for r in rows if r["Age"] == "")
    assert age.mean == pytest.approx(np.mean([float(r["Age"]) for r in rows if r["Age"]]))
    embarked = profile.feature("in_embarked").distribution
    assert embarked.missing == sum(1 for r in rows if r["Embarked"] == "")
    pclass = profile.feature("in_pclass").distribution
    assert set(pclass.categories) == {"1", "2", "3", OTHER}
    assert int(pclass.counts[pclass.categories.index("1")]) == sum(
        1 for r in rows if r["Pclass"] == "1"
    )
    assert profile.multivariate is not None
    performance = profile.performance
    assert performance is not None
    assert (performance.metric, performance.prediction) == ("error_rate", "out_label")
    assert performance.n == len(rows)
    assert performance.mean == pytest.approx(float(np.mean(said != survived)))


def test_profile_from_file_without_predictions_has_no_performance_reference():
    profile = profile_from_file(
        TITANIC, "titanic", "1", label="Survived", features=TITANIC_FEATURES
    )
    assert profile.performance is None
    assert "in_survived" not in {f.column for f in profile.features}


def test_a_missing_feature_names_itself_and_the_files_columns():
    with pytest.raises(ValueError, match=r"'cabin_class'.*Pclass.*Fare"):
        profile_from_file(
            TITANIC, "titanic", "1", label="Survived", features=["fare", "cabin_class"]
        )


def test_profile_from_parquet_matches_names_ignoring_case(tmp_path):
    path = tmp_path / "train.parquet"
    rng = np.random.default_rng(4)
    pq.write_table(
        pa.table({"Fare": rng.gamma(2.0, 10.0, 300), "Sex": rng.choice(["m", "f"], 300)}), path
    )

    profile = profile_from_file(path, "titanic", "1", label=None, features=None)

    assert [f.column for f in profile.features] == ["in_fare", "in_sex"]
    assert profile.source == "file:train.parquet"


def test_whole_float32_categories_are_the_numbers_text_and_nan_is_missing(tmp_path):
    """DuckDB reads a FLOAT column as numpy float32, whose 3.0 became the category '3.0'
    (never matching the log's '3') and whose NaN became the category 'nan'."""
    path = tmp_path / "train.parquet"
    classes = np.array([1, 2, 3] * 100 + [np.nan] * 30, dtype=np.float32)
    pq.write_table(pa.table({"pclass": classes}), path)

    profile = profile_from_file(path, "titanic", "1", label=None, features=None)

    pclass = profile.feature("in_pclass").distribution
    assert set(pclass.categories) == {"1", "2", "3", OTHER}
    assert pclass.missing == 30


def test_reference_store_keeps_every_saved_profile(tmp_path):
    store = ReferenceStore(tmp_path / "models")
    first = build_profile("titanic", "1", mixed_columns(seed=1), "file:a.csv")
    second = build_profile("titanic", "1", mixed_columns(seed=2), "file:b.csv")

    assert store.latest("titanic", "1") is None
    assert store.history("titanic", "1") == []
    first_path = store.save(first)
    second_path = store.save(second)

    folder = tmp_path / "models" / "titanic" / "references" / "1"
    assert first_path.parent == folder == second_path.parent
    assert sorted(p.name for p in folder.iterdir()) == [first_path.name, second_path.name]
    assert store.history("titanic", "1") == [first_path.name, second_path.name]
    latest = store.latest("titanic", "1")
    assert latest is not None
    assert latest[0] == second_path.name
    assert latest[1].source == "file:b.csv"
    assert latest[1].to_dict() == second.to_dict()
    assert first_path.name.startswith("profile-") and first_path.suffix == ".json"
    assert store.latest("titanic", "2") is None


def test_reference_store_refuses_names_that_leave_the_repository(tmp_path):
    store = ReferenceStore(tmp_path)
    with pytest.raises(ValueError, match="not a usable"):
        store.history("../etc", "1")

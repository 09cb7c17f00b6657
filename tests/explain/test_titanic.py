"""Titanic passengers through an encode-then-classify model: explanations name the five inputs
the caller sends (fare, sex, embarked, pclass, age), never the one-hot columns inside."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression

from explain.frame import Frame, sample_rows, take
from explain.kernel_shap import kernel_shap
from explain.permutation import permutation_importance
from runtime.demo.titanic_data import CATEGORIES, FEATURES, NUMERIC_FEATURES, load_titanic


class EncodedLogistic:
    """Impute, scale and one-hot encode, then a logistic regression: a pipeline in small."""

    def __init__(self, frame: Frame, labels: np.ndarray) -> None:
        self.fill = {name: float(np.nanmedian(frame[name])) for name in NUMERIC_FEATURES}
        filled = {name: self._filled(frame, name) for name in NUMERIC_FEATURES}
        self.mean = {name: float(filled[name].mean()) for name in NUMERIC_FEATURES}
        self.scale = {name: float(filled[name].std()) for name in NUMERIC_FEATURES}
        self.columns = [
            *NUMERIC_FEATURES,
            *(f"{f}={c}" for f, cs in CATEGORIES.items() for c in cs),
        ]
        self.model = LogisticRegression(max_iter=1000).fit(self.encode(frame), labels)

    def _filled(self, frame: Frame, name: str) -> np.ndarray:
        return np.where(np.isnan(frame[name]), self.fill[name], frame[name])

    def encode(self, frame: Frame) -> np.ndarray:
        numeric = [
            (self._filled(frame, name) - self.mean[name]) / self.scale[name]
            for name in NUMERIC_FEATURES
        ]
        embarked = np.where(frame["embarked"] == None, "S", frame["embarked"])  # noqa: E711
        values = {"sex": frame["sex"], "embarked": embarked, "pclass": frame["pclass"]}
        onehot = [
            (values[name] == category).astype(np.float64)
            for name, categories in CATEGORIES.items()
            for category in categories
        ]
        return np.column_stack([*numeric, *onehot])

    def probability(self, frame: Frame) -> np.ndarray:
        return np.asarray(self.model.predict_proba(self.encode(frame))[:, 1], dtype=float)

    def log_odds(self, frame: Frame) -> np.ndarray:
        return np.asarray(self.model.decision_function(self.encode(frame)), dtype=float)


@pytest.fixture(scope="module")
def titanic() -> tuple[EncodedLogistic, Frame, Frame, Frame, np.ndarray]:
    reference = load_titanic("reference")
    assert reference.survived is not None
    model = EncodedLogistic(reference.columns, reference.survived)
    background = sample_rows(reference.columns, 40, seed=0)
    rows = take(load_titanic("analysis").columns, slice(0, 25))
    return model, rows, background, reference.columns, reference.survived


def test_attributions_are_keyed_by_the_five_inputs_and_add_up(titanic):
    model, rows, background, _, _ = titanic
    result = kernel_shap(model.probability, rows, background)
    assert result.features == FEATURES
    assert result.additivity_error() < 1e-6
    record = result.to_records()[0]
    assert set(record["attributions"]) == set(FEATURES)
    assert record["prediction"] == pytest.approx(model.probability(take(rows, [0]))[0])
    assert result.global_importance().ranking()[0] == "sex"


def test_a_categorical_input_gets_the_sum_of_its_one_hot_columns_contributions(titanic):
    # In log-odds the model is additive in its inputs, so each input's exact Shapley value
    # is the sum over its encoded columns of w_c * (encoded_c(x) - mean over background).
    model, rows, background, _, _ = titanic
    result = kernel_shap(model.log_odds, rows, background)
    contributions = model.model.coef_[0] * (
        model.encode(rows) - model.encode(background).mean(axis=0)
    )
    owner = [column.split("=")[0] for column in model.columns]
    for j, name in enumerate(FEATURES):
        mine = [k for k, column_owner in enumerate(owner) if column_owner == name]
        expected = contributions[:, mine].sum(axis=1)
        np.testing.assert_allclose(result.values[:, j], expected, atol=1e-9)


def test_permutation_importance_with_survival_labels_ranks_sex_first(titanic):
    model, _, _, reference, survived = titanic
    result = permutation_importance(
        model.probability, reference, labels=survived, metric="accuracy", repeats=3
    )
    assert result.features == FEATURES
    assert result.ranking()[0] == "sex"
    assert result.baseline_score is not None and result.baseline_score > 0.75

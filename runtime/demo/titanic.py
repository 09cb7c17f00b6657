"""The ``titanic`` demo model: a pipeline (impute, one-hot, scale, concat, ONNX classifier).

Versions 1 (logistic regression) and 2 (gradient boosting) share one preprocessing, fitted
on ``titanic_reference.csv``. The training features are computed by loading the
preprocessing steps as a pipeline of their own, so training and serving run the same code.
``titanic_pmml`` (``runtime.demo.pmml_writer``) re-expresses version 1 as PMML.

Inputs (all ``[-1, 1]``): ``fare`` FP32 nullable, ``sex`` BYTES female|male, ``embarked``
BYTES C|Q|S nullable, ``pclass`` BYTES "1"|"2"|"3", ``age`` FP32 nullable. Outputs:
``survived`` INT64 ``[-1, 1]`` (0/1) and ``probability`` FP32 ``[-1, 1]`` (of survival).
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from runtime.demo.files import write_yaml
from runtime.demo.pmml_writer import logistic_from_pipeline, write_pmml
from runtime.demo.titanic_data import CATEGORIES, FEATURES, NUMERIC_FEATURES, TitanicData
from runtime.pipeline import PipelineBackend

N_FEATURES = len(NUMERIC_FEATURES) + sum(len(values) for values in CATEGORIES.values())
ONNX_OPSET = {"": 17, "ai.onnx.ml": 3}


@dataclass(frozen=True)
class Preprocessing:
    """What the pipeline's processors were fitted to: fill values, scaler statistics."""

    fill: dict[str, float | str]
    mean: dict[str, float]
    scale: dict[str, float]


def fit_preprocessing(data: TitanicData) -> Preprocessing:
    """Medians for the numbers, the most frequent port for ``embarked``, then the scaler's
    mean and (population) standard deviation of the filled numbers."""
    fill: dict[str, float | str] = {}
    mean: dict[str, float] = {}
    scale: dict[str, float] = {}
    for name in NUMERIC_FEATURES:
        column = data.columns[name]
        median = round(float(np.nanmedian(column)), 4)
        filled = np.where(np.isnan(column), median, column)
        fill[name] = median
        mean[f"{name}_filled"] = round(float(filled.mean()), 6)
        scale[f"{name}_filled"] = round(float(filled.std()), 6)
    ports = [port for port in data.columns["embarked"] if port is not None]
    fill["embarked"] = max(sorted(set(ports)), key=ports.count)
    return Preprocessing(fill, mean, scale)


def _inputs() -> list[dict[str, Any]]:
    return [
        {"name": "fare", "datatype": "FP32", "shape": [-1, 1], "nullable": True,
         "description": "ticket price in pounds"},
        {"name": "sex", "datatype": "BYTES", "shape": [-1, 1],
         "allowed_values": list(CATEGORIES["sex"])},
        {"name": "embarked", "datatype": "BYTES", "shape": [-1, 1], "nullable": True,
         "allowed_values": list(CATEGORIES["embarked"]),
         "description": "port: C = Cherbourg, Q = Queenstown, S = Southampton"},
        {"name": "pclass", "datatype": "BYTES", "shape": [-1, 1],
         "allowed_values": list(CATEGORIES["pclass"]), "description": "ticket class"},
        {"name": "age", "datatype": "FP32", "shape": [-1, 1], "nullable": True,
         "description": "age in years"},
    ]  # fmt: skip


def preprocessing_steps(prep: Preprocessing) -> list[dict[str, Any]]:
    """The steps from the raw inputs to the ``features`` matrix the classifiers take."""
    return [
        {"name": "fill_missing", "processor": "impute",
         "inputs": ["fare", "age", "embarked"],
         "outputs": ["fare_filled", "age_filled", "embarked_filled"],
         "params": {"values": dict(prep.fill)}},
        {"name": "scale", "processor": "standard_scaler",
         "inputs": ["fare_filled", "age_filled"], "outputs": ["fare_scaled", "age_scaled"],
         "params": {"mean": dict(prep.mean), "scale": dict(prep.scale)}},
        {"name": "encode", "processor": "onehot",
         "inputs": ["sex", "embarked_filled", "pclass"], "outputs": ["categorical"],
         "params": {"categories": {"sex": list(CATEGORIES["sex"]),
                                   "embarked_filled": list(CATEGORIES["embarked"]),
                                   "pclass": list(CATEGORIES["pclass"])},
                    "handle_unknown": "ignore"}},
        {"name": "assemble", "processor": "concat",
         "inputs": ["fare_scaled", "age_scaled", "categorical"], "outputs": ["features"]},
    ]  # fmt: skip


def pipeline_document(prep: Preprocessing, classifier_file: str) -> dict[str, Any]:
    """The whole ``pipeline.yaml`` of one version."""
    steps = [
        *preprocessing_steps(prep),
        {"name": "classifier", "model": classifier_file,
         "inputs": {"features": "features"},
         "outputs": {"label": "label", "probabilities": "probabilities"}},
        {"name": "survived", "processor": "reshape", "inputs": ["label"],
         "outputs": ["survived"], "params": {"shape": [-1, 1]}},
        {"name": "probability", "processor": "select", "inputs": ["probabilities"],
         "outputs": ["probability"], "params": {"column": 1}},
    ]  # fmt: skip
    return {
        "description": "Titanic survival: impute, scale, one-hot encode, then an ONNX classifier",
        "inputs": _inputs(),
        "steps": steps,
        "outputs": ["survived", "probability"],
    }


def feature_matrix(data: TitanicData, prep: Preprocessing) -> np.ndarray:
    """Runs the preprocessing steps, as a pipeline, over ``data``: the ``[n, 10]`` features."""
    document = {"inputs": _inputs(), "steps": preprocessing_steps(prep), "outputs": ["features"]}
    with tempfile.TemporaryDirectory(prefix="titanic-features-") as folder:
        path = write_yaml(Path(folder) / "pipeline.yaml", document)
        backend = PipelineBackend()
        backend.load(path)
        try:
            return backend.predict(data.as_inputs())["features"]
        finally:
            backend.unload()


def train_classifiers(features: np.ndarray, labels: np.ndarray) -> dict[int, Any]:
    """Version number -> fitted scikit-learn classifier (fixed seeds)."""
    from sklearn.ensemble import GradientBoostingClassifier
    from sklearn.linear_model import LogisticRegression

    logistic = LogisticRegression(C=1.0, max_iter=1000).fit(features, labels)
    boosted = GradientBoostingClassifier(
        n_estimators=60, max_depth=3, learning_rate=0.1, random_state=0
    ).fit(features, labels)
    return {1: logistic, 2: boosted}


def to_onnx_bytes(classifier: Any) -> bytes:
    """The classifier as ONNX: input ``features`` FP32 ``[-1, 10]``; outputs ``label``
    (INT64 ``[-1]``) and ``probabilities`` (FP32 ``[-1, 2]``, no ZipMap)."""
    from skl2onnx import to_onnx
    from skl2onnx.common.data_types import FloatTensorType

    model = to_onnx(
        classifier,
        initial_types=[("features", FloatTensorType([None, N_FEATURES]))],
        options={id(classifier): {"zipmap": False}},
        target_opset=ONNX_OPSET,
    )
    data: bytes = model.SerializeToString()
    return data


def write_titanic(dest: Path, prep: Preprocessing, classifiers: dict[int, Any]) -> None:
    """Writes ``dest/titanic/{1,2}/`` and ``dest/titanic/config.yaml``."""
    model_dir = dest / "titanic"
    for version, classifier in classifiers.items():
        folder = model_dir / str(version)
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "classifier.onnx").write_bytes(to_onnx_bytes(classifier))
        write_yaml(folder / "pipeline.yaml", pipeline_document(prep, "classifier.onnx"))
    config = {
        "version_policy": {"all": True},
        "labels": {"stable": 1, "canary": 2},
    }
    write_yaml(model_dir / "config.yaml", config)


def write_titanic_pmml(dest: Path, prep: Preprocessing, logistic: Any) -> None:
    """Writes ``dest/titanic_pmml/1/titanic.pmml``: titanic version 1 as a PMML model."""
    model = logistic_from_pipeline(
        coefficients=logistic.coef_[0],
        intercept=float(logistic.intercept_[0]),
        numeric=NUMERIC_FEATURES,
        mean=[prep.mean[f"{name}_filled"] for name in NUMERIC_FEATURES],
        scale=[prep.scale[f"{name}_filled"] for name in NUMERIC_FEATURES],
        categories=CATEGORIES,
        missing=prep.fill,
    )
    # The data dictionary lists the fields in the pipeline's input order.
    fields = sorted(model.fields, key=lambda field: FEATURES.index(field.name))
    write_pmml(
        dest / "titanic_pmml" / "1" / "titanic.pmml",
        replace(model, fields=fields),
        model_name="titanic",
        description="Titanic survival: titanic version 1's logistic regression, scaler folded in",
    )

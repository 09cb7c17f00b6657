"""Hand-written PMML 4.4 for a binary logistic regression (``RegressionModel``).

``titanic_pmml`` is titanic version 1 re-expressed as PMML: its logistic regression ran on
standardised numbers and one-hot categories, so ``logistic_from_pipeline`` folds the
scaler into the numeric coefficients (``w / scale``, intercept ``- w * mean / scale``) and
gives each category its one-hot weight. The imputation becomes the mining schema's
``missingValueReplacement``. The two models then compute the same logit (in float64 here,
float32 in ONNX) and agree on every passenger's class.

Output fields: ``survived`` (the predicted class, integer 0/1) and ``probability`` (the
probability of class 1).
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

PMML_NS = "http://www.dmg.org/PMML-4_4"


@dataclass(frozen=True)
class NumericField:
    name: str
    coefficient: float
    missing_replacement: float | None = None


@dataclass(frozen=True)
class CategoricalField:
    name: str
    coefficients: Mapping[str, float]  # category -> weight of its indicator
    missing_replacement: str | None = None


@dataclass(frozen=True)
class BinaryLogistic:
    """``P(target = 1) = 1 / (1 + exp(-(intercept + sum of field terms)))``."""

    intercept: float
    fields: Sequence[NumericField | CategoricalField]
    target: str = "Survived"
    predicted_field: str = "survived"
    probability_field: str = "probability"


def logistic_from_pipeline(
    *,
    coefficients: np.ndarray,
    intercept: float,
    numeric: Sequence[str],
    mean: Sequence[float],
    scale: Sequence[float],
    categories: Mapping[str, Sequence[str]],
    missing: Mapping[str, float | str],
) -> BinaryLogistic:
    """Fold ``scale -> one-hot -> logistic regression`` into one ``BinaryLogistic``.

    ``coefficients`` are in the pipeline's feature order: the standardised ``numeric``
    columns first, then each categorical input's one-hot block in ``categories`` order.
    """
    weights = [float(w) for w in np.asarray(coefficients).reshape(-1)]
    fields: list[NumericField | CategoricalField] = []
    bias = float(intercept)
    for index, name in enumerate(numeric):
        w = weights[index] / scale[index]
        bias -= w * mean[index]
        replacement = missing.get(name)
        fields.append(NumericField(name, w, None if replacement is None else float(replacement)))
    position = len(numeric)
    for name, values in categories.items():
        block = dict(zip(values, weights[position : position + len(values)], strict=True))
        position += len(values)
        replacement = missing.get(name)
        fields.append(
            CategoricalField(name, block, None if replacement is None else str(replacement))
        )
    if position != len(weights):
        raise ValueError(f"{len(weights)} coefficients for {position} features")
    return BinaryLogistic(bias, fields)


def _number(value: float) -> str:
    return repr(float(value))


def _add(parent: ET.Element, tag: str, **attributes: str) -> ET.Element:
    return ET.SubElement(parent, tag, attributes)


def pmml_document(model: BinaryLogistic, model_name: str, description: str = "") -> str:
    """The PMML 4.4 text of ``model``."""
    root = ET.Element("PMML", {"version": "4.4", "xmlns": PMML_NS})
    header = _add(root, "Header", description=description)
    _add(header, "Application", name="driftgate demo", version="1")

    dictionary = _add(root, "DataDictionary", numberOfFields=str(len(model.fields) + 1))
    for field in model.fields:
        if isinstance(field, NumericField):
            _add(dictionary, "DataField", name=field.name, optype="continuous", dataType="double")
        else:
            data_field = _add(
                dictionary, "DataField", name=field.name, optype="categorical", dataType="string"
            )
            for value in field.coefficients:
                _add(data_field, "Value", value=value)
    target = _add(
        dictionary, "DataField", name=model.target, optype="categorical", dataType="integer"
    )
    for value in ("0", "1"):
        _add(target, "Value", value=value)

    regression = _add(
        root,
        "RegressionModel",
        modelName=model_name,
        functionName="classification",
        algorithmName="logisticRegression",
        normalizationMethod="logit",
    )
    schema = _add(regression, "MiningSchema")
    for field in model.fields:
        mining = _add(schema, "MiningField", name=field.name)
        replacement = field.missing_replacement
        if replacement is not None:
            mining.set(
                "missingValueReplacement",
                _number(replacement) if isinstance(replacement, float) else replacement,
            )
    _add(schema, "MiningField", name=model.target, usageType="target")

    output = _add(regression, "Output")
    _add(
        output,
        "OutputField",
        name=model.predicted_field,
        optype="categorical",
        dataType="integer",
        feature="predictedValue",
    )
    _add(
        output,
        "OutputField",
        name=model.probability_field,
        optype="continuous",
        dataType="double",
        feature="probability",
        value="1",
    )

    table = _add(
        regression, "RegressionTable", intercept=_number(model.intercept), targetCategory="1"
    )
    for field in model.fields:
        if isinstance(field, NumericField):
            _add(table, "NumericPredictor", name=field.name, coefficient=_number(field.coefficient))
            continue
        for value, weight in field.coefficients.items():
            _add(
                table,
                "CategoricalPredictor",
                name=field.name,
                value=value,
                coefficient=_number(weight),
            )
    # Binary logit: class 1 gets 1 / (1 + exp(-y)), class 0 the rest (an empty table).
    _add(regression, "RegressionTable", intercept="0.0", targetCategory="0")
    ET.indent(root)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"


def write_pmml(path: Path, model: BinaryLogistic, model_name: str, description: str = "") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(pmml_document(model, model_name, description), encoding="utf-8")

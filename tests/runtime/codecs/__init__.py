"""Tests of the HTTP dialect codecs; ``titanic_metadata`` is the tabular model they share."""

from __future__ import annotations

from runtime.tensors import ModelMetadata, TensorSpec

FARE = "ticket price in pounds"
EMBARKED = "port: C = Cherbourg, Q = Queenstown, S = Southampton"
PCLASS = "ticket class"
AGE = "age in years"


def titanic_metadata() -> ModelMetadata:
    """The demo titanic pipeline's contract (``runtime.demo.titanic``): one ``[-1, 1]``
    column per feature, categoricals with allowed values, missing numbers allowed."""
    return ModelMetadata(
        inputs=(
            TensorSpec("fare", "FP32", (-1, 1), nullable=True, description=FARE),
            TensorSpec("sex", "BYTES", (-1, 1), allowed_values=("female", "male")),
            TensorSpec(
                "embarked",
                "BYTES",
                (-1, 1),
                allowed_values=("C", "Q", "S"),
                nullable=True,
                description=EMBARKED,
            ),
            TensorSpec(
                "pclass", "BYTES", (-1, 1), allowed_values=("1", "2", "3"), description=PCLASS
            ),
            TensorSpec("age", "FP32", (-1, 1), nullable=True, description=AGE),
        ),
        outputs=(
            TensorSpec("survived", "INT64", (-1, 1)),
            TensorSpec("probability", "FP32", (-1, 1)),
        ),
        platform="pipeline",
    )

"""Processors that pick, reshape or decide: select, reshape, argmax, threshold."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from runtime.errors import BadRequest
from runtime.processors.base import (
    Params,
    check_column,
    check_count,
    check_kind,
    require,
)
from runtime.tensors import NUMERIC_DATATYPES, TensorSpec


class Select:
    """Takes columns of a matrix: ``column: 1`` gives ``[-1, 1]`` (for example the class-1
    probability), ``columns: [0, 2]`` gives ``[-1, 2]``. Negative indices count from the end."""

    def __init__(self, params: Params) -> None:
        if ("column" in params) == ("columns" in params):
            raise ValueError("set exactly one of params.column or params.columns")
        raw = [params["column"]] if "column" in params else list(params["columns"])
        if not raw or not all(isinstance(c, int) and not isinstance(c, bool) for c in raw):
            raise ValueError("params.column(s) must be integer column indices")
        self._columns: list[int] = raw

    def output_specs(self, input_specs: Sequence[TensorSpec]) -> list[TensorSpec]:
        check_count(input_specs, 1)
        spec = input_specs[0]
        if len(spec.shape) != 2:
            raise ValueError(f"input '{spec.name}' has shape {list(spec.shape)}; expected [-1, k]")
        width = spec.shape[1]
        if width != -1 and not all(-width <= c < width for c in self._columns):
            raise ValueError(f"params.column(s) {self._columns} out of range for {width} columns")
        return [TensorSpec(spec.name, spec.datatype, (-1, len(self._columns)))]

    def __call__(self, inputs: Sequence[np.ndarray]) -> list[np.ndarray]:
        return [inputs[0][:, self._columns]]


class Reshape:
    """Reshapes each input to ``shape`` (one ``-1`` allowed, usually the batch dimension),
    for example a model's rank-1 label ``[-1]`` to ``[-1, 1]``."""

    def __init__(self, params: Params) -> None:
        shape = require(params, "shape")
        if not isinstance(shape, Sequence) or not all(isinstance(d, int) for d in shape):
            raise ValueError("params.shape must be a list of integers")
        if list(shape).count(-1) > 1:
            raise ValueError("params.shape may hold at most one -1")
        self._shape = tuple(shape)

    def output_specs(self, input_specs: Sequence[TensorSpec]) -> list[TensorSpec]:
        check_count(input_specs)
        return [TensorSpec(s.name, s.datatype, self._shape, s.allowed_values) for s in input_specs]

    def __call__(self, inputs: Sequence[np.ndarray]) -> list[np.ndarray]:
        try:
            return [x.reshape(self._shape) for x in inputs]
        except ValueError as exc:
            raise BadRequest(f"cannot reshape to {list(self._shape)}: {exc}") from None


class Argmax:
    """Class scores ``[-1, k]`` -> the best class: INT64 ``[-1, 1]`` indices, or, with
    ``labels`` (one per column), BYTES ``[-1, 1]`` label names."""

    def __init__(self, params: Params) -> None:
        labels = params.get("labels")
        self._labels = None if labels is None else np.array([str(v) for v in labels], dtype=object)

    def output_specs(self, input_specs: Sequence[TensorSpec]) -> list[TensorSpec]:
        check_count(input_specs, 1)
        spec = input_specs[0]
        check_kind(spec, NUMERIC_DATATYPES, "numeric class scores")
        if len(spec.shape) != 2:
            raise ValueError(f"input '{spec.name}' has shape {list(spec.shape)}; expected [-1, k]")
        if self._labels is None:
            return [TensorSpec(spec.name, "INT64", (-1, 1))]
        if spec.shape[1] not in (-1, len(self._labels)):
            raise ValueError(
                f"params.labels has {len(self._labels)} names for {spec.shape[1]} columns"
            )
        return [TensorSpec(spec.name, "BYTES", (-1, 1), tuple(self._labels))]

    def __call__(self, inputs: Sequence[np.ndarray]) -> list[np.ndarray]:
        best = np.argmax(inputs[0], axis=1).astype(np.int64).reshape(-1, 1)
        return [best if self._labels is None else self._labels[best]]


class Threshold:
    """Scores -> INT64 ``[-1, 1]``: 1 where the score is ``>= threshold`` (default 0.5), else 0.
    The input is ``[-1, 1]``, or a matrix with ``column`` naming the score column."""

    def __init__(self, params: Params) -> None:
        self._threshold = float(params.get("threshold", 0.5))
        column = params.get("column")
        self._column = None if column is None else int(column)

    def output_specs(self, input_specs: Sequence[TensorSpec]) -> list[TensorSpec]:
        check_count(input_specs, 1)
        spec = input_specs[0]
        check_kind(spec, NUMERIC_DATATYPES, "numeric scores")
        if self._column is None:
            check_column(spec)
        return [TensorSpec(spec.name, "INT64", (-1, 1))]

    def __call__(self, inputs: Sequence[np.ndarray]) -> list[np.ndarray]:
        x = inputs[0].reshape(len(inputs[0]), -1)
        scores = x[:, [0 if self._column is None else self._column]]
        return [(scores >= self._threshold).astype(np.int64)]

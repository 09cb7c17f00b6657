"""Numeric processors: scaling, imputation, concatenation, casting."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from runtime.errors import BadRequest
from runtime.processors.base import (
    BoundProcessor,
    Params,
    check_count,
    check_kind,
    float_datatype,
    is_missing,
    per_input,
    require,
    to_text,
    to_text_array,
)
from runtime.tensors import NUMERIC_DATATYPES, TensorSpec, numpy_dtype


class StandardScaler(BoundProcessor):
    """``(x - mean) / scale`` on numeric inputs, one output per input.

    ``mean`` and ``scale`` are each a number, a list (one per column), or a mapping from
    input tensor name to either. Float inputs keep their datatype; integers become FP32.
    """

    def __init__(self, params: Params) -> None:
        self._mean_param = require(params, "mean")
        self._scale_param = require(params, "scale")
        self._mean: list[np.ndarray] = []
        self._scale: list[np.ndarray] = []

    def output_specs(self, input_specs: Sequence[TensorSpec]) -> list[TensorSpec]:
        check_count(input_specs)
        for spec in input_specs:
            check_kind(spec, NUMERIC_DATATYPES, "a numeric tensor")
        self._mean = [
            np.asarray(m, dtype=np.float64)
            for m in per_input("mean", self._mean_param, input_specs)
        ]
        self._scale = [
            np.asarray(s, dtype=np.float64)
            for s in per_input("scale", self._scale_param, input_specs)
        ]
        if any((s == 0).any() for s in self._scale):
            raise ValueError("params.scale must not contain 0")
        for spec, mean, scale in zip(input_specs, self._mean, self._scale, strict=True):
            width = spec.shape[-1] if len(spec.shape) > 1 else 1
            for name, values in (("mean", mean), ("scale", scale)):
                if values.ndim > 1 or (width != -1 and values.size not in (1, width)):
                    raise ValueError(
                        f"params.{name} for '{spec.name}' has {values.size} values "
                        f"for {width} column(s)"
                    )
        self._bind(input_specs)
        return [TensorSpec(s.name, float_datatype(s), s.shape) for s in input_specs]

    def __call__(self, inputs: Sequence[np.ndarray]) -> list[np.ndarray]:
        self._bound()
        outputs = []
        for x, mean, scale in zip(inputs, self._mean, self._scale, strict=True):
            dtype = x.dtype if x.dtype.kind == "f" else np.dtype(np.float32)
            outputs.append(((x - mean) / scale).astype(dtype))
        return outputs


class Impute(BoundProcessor):
    """Replaces missing values: NaN in numeric inputs; ``None``, ``""`` or NaN in BYTES ones.

    ``value`` (one for every input) or ``values`` (mapping input name -> value). The output
    has the input's datatype and shape and is no longer nullable.
    """

    def __init__(self, params: Params) -> None:
        if ("value" in params) == ("values" in params):
            raise ValueError("set exactly one of params.value or params.values")
        self._param = params.get("values", params.get("value"))
        self._values: list[Any] = []

    def output_specs(self, input_specs: Sequence[TensorSpec]) -> list[TensorSpec]:
        check_count(input_specs)
        self._values = per_input("values", self._param, input_specs)
        for spec, value in zip(input_specs, self._values, strict=True):
            numeric = isinstance(value, int | float) and not isinstance(value, bool)
            if spec.datatype == "BYTES" and not isinstance(value, str):
                raise ValueError(f"input '{spec.name}' is BYTES; its fill value must be text")
            if spec.datatype in NUMERIC_DATATYPES and not numeric:
                raise ValueError(f"input '{spec.name}' is numeric; its fill value must be a number")
        self._bind(input_specs)
        return [TensorSpec(s.name, s.datatype, s.shape, s.allowed_values) for s in input_specs]

    def __call__(self, inputs: Sequence[np.ndarray]) -> list[np.ndarray]:
        self._bound()
        outputs = []
        for x, value in zip(inputs, self._values, strict=True):
            if x.dtype.kind == "f":
                outputs.append(np.where(np.isnan(x), x.dtype.type(value), x))
            elif x.dtype.kind == "O":
                missing = np.frompyfunc(is_missing, 1, 1)(x).astype(bool)
                filled = x.copy()
                filled[missing] = value
                outputs.append(filled)
            else:
                outputs.append(x)
        return outputs


class Concat:
    """Joins numeric columns side by side into one ``[-1, k]`` matrix (``datatype``, FP32)."""

    def __init__(self, params: Params) -> None:
        self._datatype = str(params.get("datatype", "FP32"))
        self._dtype = numpy_dtype(self._datatype)

    def output_specs(self, input_specs: Sequence[TensorSpec]) -> list[TensorSpec]:
        check_count(input_specs)
        widths = []
        for spec in input_specs:
            check_kind(spec, NUMERIC_DATATYPES | {"BOOL"}, "a numeric tensor")
            if len(spec.shape) not in (1, 2):
                raise ValueError(
                    f"input '{spec.name}' has shape {list(spec.shape)}; expected [-1, k]"
                )
            widths.append(1 if len(spec.shape) == 1 else spec.shape[1])
        width = -1 if -1 in widths else sum(widths)
        return [TensorSpec("concat", self._datatype, (-1, width))]

    def __call__(self, inputs: Sequence[np.ndarray]) -> list[np.ndarray]:
        columns = [x.reshape(len(x), -1).astype(self._dtype, copy=False) for x in inputs]
        return [np.concatenate(columns, axis=1)]


class Cast:
    """Converts every input to ``datatype``; BYTES are parsed as numbers (400 if they are not)."""

    def __init__(self, params: Params) -> None:
        self._datatype = str(require(params, "datatype"))
        self._dtype = numpy_dtype(self._datatype)

    def output_specs(self, input_specs: Sequence[TensorSpec]) -> list[TensorSpec]:
        check_count(input_specs)
        return [TensorSpec(s.name, self._datatype, s.shape) for s in input_specs]

    def __call__(self, inputs: Sequence[np.ndarray]) -> list[np.ndarray]:
        outputs = []
        for x in inputs:
            if self._datatype == "BYTES":
                outputs.append(to_text_array(x).astype(object))
                continue
            numbers = _parse_numbers(x) if x.dtype.kind == "O" else x
            outputs.append(numbers.astype(self._dtype))
        return outputs


def _parse_number(value: Any) -> float:
    text = to_text(value)
    if text is None:
        return math.nan
    try:
        return float(text)
    except ValueError:
        raise BadRequest(f"'{text}' is not a number") from None


def _parse_numbers(values: np.ndarray) -> np.ndarray:
    numbers: np.ndarray = np.frompyfunc(_parse_number, 1, 1)(values).astype(np.float64)
    return numbers

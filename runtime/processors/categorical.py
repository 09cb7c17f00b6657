"""Categorical encoders: one-hot and ordinal codes."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from runtime.processors.base import (
    BoundProcessor,
    Params,
    category_codes,
    check_column,
    check_count,
    choice,
    require,
    resolve_categories,
)
from runtime.tensors import TensorSpec


class OneHot(BoundProcessor):
    """One-hot encodes categorical columns into one FP32 matrix ``[-1, sum of categories]``.

    ``categories``: a mapping input name -> list, or a list of lists in input order.
    ``handle_unknown``: ``ignore`` (an unknown or missing value encodes as all zeros) or
    ``error`` (400 naming the input and the allowed values).
    """

    def __init__(self, params: Params) -> None:
        self._categories_param = require(params, "categories")
        self._strict = choice(params, "handle_unknown", ("ignore", "error")) == "error"
        self._categories: list[list[str]] = []

    def output_specs(self, input_specs: Sequence[TensorSpec]) -> list[TensorSpec]:
        check_count(input_specs)
        for spec in input_specs:
            check_column(spec)
        self._categories = resolve_categories(self._categories_param, input_specs)
        self._bind(input_specs)
        width = sum(len(cats) for cats in self._categories)
        return [TensorSpec("onehot", "FP32", (-1, width))]

    def __call__(self, inputs: Sequence[np.ndarray]) -> list[np.ndarray]:
        names = self._bound()
        blocks = []
        for x, cats, name in zip(inputs, self._categories, names, strict=True):
            codes = category_codes(x, cats, name, self._strict)
            block = np.zeros((len(codes), len(cats)), dtype=np.float32)
            known = codes >= 0
            block[np.nonzero(known)[0], codes[known]] = 1.0
            blocks.append(block)
        return [np.concatenate(blocks, axis=1)]


class Ordinal(BoundProcessor):
    """Categories -> INT64 codes (their index in the list), one ``[-1, 1]`` output per input.

    ``handle_unknown``: ``value`` (use ``unknown_value``, default -1) or ``error``.
    """

    def __init__(self, params: Params) -> None:
        self._categories_param = require(params, "categories")
        self._strict = choice(params, "handle_unknown", ("value", "error")) == "error"
        self._unknown = int(params.get("unknown_value", -1))
        self._categories: list[list[str]] = []

    def output_specs(self, input_specs: Sequence[TensorSpec]) -> list[TensorSpec]:
        check_count(input_specs)
        for spec in input_specs:
            check_column(spec)
        self._categories = resolve_categories(self._categories_param, input_specs)
        self._bind(input_specs)
        return [TensorSpec(s.name, "INT64", (-1, 1)) for s in input_specs]

    def __call__(self, inputs: Sequence[np.ndarray]) -> list[np.ndarray]:
        names = self._bound()
        outputs = []
        for x, cats, name in zip(inputs, self._categories, names, strict=True):
            codes = category_codes(x, cats, name, self._strict)
            outputs.append(np.where(codes >= 0, codes, self._unknown).reshape(-1, 1))
        return outputs

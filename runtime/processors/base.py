"""Helpers the built-in processors share: parameter spreading, spec checks, category text."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from runtime.errors import BadRequest
from runtime.tensors import FLOAT_DATATYPES, TensorSpec

Params = Mapping[str, Any]


def per_input(param: str, value: Any, specs: Sequence[TensorSpec]) -> list[Any]:
    """Spread a parameter over the inputs: a mapping is keyed by input tensor name, anything
    else applies to every input."""
    if not isinstance(value, Mapping):
        return [value] * len(specs)
    names = [spec.name for spec in specs]
    unknown = sorted(set(value) - set(names))
    if unknown:
        raise ValueError(f"params.{param} names {unknown}, which are not inputs of this step")
    missing = [name for name in names if name not in value]
    if missing:
        raise ValueError(f"params.{param} has no entry for input(s) {missing}")
    return [value[name] for name in names]


def require(params: Params, name: str) -> Any:
    if name not in params:
        raise ValueError(f"params.{name} is required")
    return params[name]


def check_count(specs: Sequence[TensorSpec], expected: int | None = None) -> None:
    if not specs:
        raise ValueError("the step must read at least one tensor")
    if expected is not None and len(specs) != expected:
        raise ValueError(f"the step reads {len(specs)} tensors; this processor takes {expected}")


def check_kind(spec: TensorSpec, kinds: frozenset[str], what: str) -> None:
    if spec.datatype not in kinds:
        raise ValueError(f"input '{spec.name}' is {spec.datatype}; expected {what}")


def check_column(spec: TensorSpec) -> None:
    if not (len(spec.shape) == 1 or (len(spec.shape) == 2 and spec.shape[1] in (1, -1))):
        raise ValueError(f"input '{spec.name}' has shape {list(spec.shape)}; expected [-1, 1]")


def is_missing(value: Any) -> bool:
    return (
        value is None
        or value in ("", b"")
        or (isinstance(value, float | np.floating) and math.isnan(value))
    )


def to_text(value: Any) -> str | None:
    """A category as text: ``3``, ``3.0`` and ``"3"`` are all ``"3"``; missing is ``None``."""
    if is_missing(value):
        return None
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    if isinstance(value, float | np.floating) and float(value).is_integer():
        return str(int(value))
    if isinstance(value, np.generic):
        return str(value.item())
    return str(value)


to_text_array = np.frompyfunc(to_text, 1, 1)


def category_codes(
    values: np.ndarray, categories: Sequence[str], name: str, strict: bool
) -> np.ndarray:
    """Index of each value in ``categories`` (-1 for unknown or missing), shape [n]."""
    texts = to_text_array(values.reshape(len(values), -1)[:, 0])
    codes = np.full(len(texts), -1, dtype=np.int64)
    for index, category in enumerate(categories):
        codes[texts == category] = index
    if strict and (codes < 0).any():
        bad = texts[np.argmax(codes < 0)]
        raise BadRequest(
            f"input '{name}' has value {bad!r}, which is not one of {list(categories)}"
        )
    return codes


def resolve_categories(param: Any, specs: Sequence[TensorSpec]) -> list[list[str]]:
    """Categories per input: a mapping input name -> list, a list of lists in input order,
    or one flat list shared by every input."""
    if isinstance(param, Sequence) and param and all(isinstance(c, list) for c in param):
        per_input_lists = list(param)
        if len(per_input_lists) != len(specs):
            raise ValueError(
                f"params.categories has {len(per_input_lists)} lists for {len(specs)} inputs"
            )
    else:
        per_input_lists = per_input("categories", param, specs)
    result = []
    for spec, cats in zip(specs, per_input_lists, strict=True):
        if isinstance(cats, str) or not isinstance(cats, Sequence) or not cats:
            raise ValueError(f"params.categories for '{spec.name}' must be a non-empty list")
        result.append([to_text(c) or "" for c in cats])
    return result


def float_datatype(spec: TensorSpec) -> str:
    return spec.datatype if spec.datatype in FLOAT_DATATYPES else "FP32"


def choice(params: Params, name: str, choices: tuple[str, ...]) -> str:
    value = str(params.get(name, choices[0]))
    if value not in choices:
        raise ValueError(f"params.{name} is '{value}'; expected one of {list(choices)}")
    return value


class BoundProcessor:
    """Base for processors whose per-input parameters are resolved in ``output_specs``."""

    _names: list[str] | None = None

    def _bind(self, specs: Sequence[TensorSpec]) -> None:
        self._names = [spec.name for spec in specs]

    def _bound(self) -> list[str]:
        if self._names is None:
            raise RuntimeError(f"{type(self).__name__}: call output_specs() before using it")
        return self._names

"""Check and type a request's inputs against a model's metadata, before the backend runs.

Codecs hand over arrays as the client sent them: ``object`` arrays of raw JSON values (simple
and TF-Serving dialects) or typed arrays of the datatype the client declared (Open Inference
Protocol). ``validate_inputs`` turns them into exactly what ``metadata`` promises the backend,
or raises ``BadRequest`` naming the input, the expected and the received value and its
position. Rules (also in ``docs/api.md``):

- every input the model declares is required; an unknown name lists the expected ones;
- numbers convert to the spec's datatype when the value survives: ints to floats; floats to
  ints only when integral; integers out of the datatype's range and floats beyond FP16/FP32
  range are refused. Booleans are not numbers; ``BOOL`` takes true/false or 0/1;
- strings are never parsed as numbers; numbers sent for a ``BYTES`` input become their decimal
  text (``3`` and ``3.0`` both become ``"3"``), so a categorical like ``pclass`` takes ``3``;
- missing values (JSON ``null``, NaN) are refused unless the spec is ``nullable``; then
  they become NaN for float inputs and ``None`` for ``BYTES``. Integer and BOOL inputs have
  no missing value. Infinities are never accepted (they are not a missing value);
- ``BYTES`` inputs with ``allowed_values`` (categoricals) must hold one of them;
- shapes must match (``-1`` = any); a rank-1 array of length N for a ``[-1, 1]`` spec is taken
  as the column ``[N, 1]``, and an empty one (``[]``) as zero rows of any spec whose batch
  dimension is ``-1`` (``[0, 4]`` for ``[-1, 4]``); all batch dimensions (dim 0 where the
  spec has ``-1``) agree.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np

from runtime.codecs.json import format_position
from runtime.errors import BadRequest, InferenceServerError
from runtime.tensors import (
    FLOAT_DATATYPES,
    ModelMetadata,
    TensorSpec,
    format_shape,
    numpy_dtype,
    shape_matches,
)

_MAX_LISTED = 20
_FLOAT_LIMITS = {
    "FP16": float(np.finfo(np.float16).max),
    "FP32": float(np.finfo(np.float32).max),
    "FP64": float(np.finfo(np.float64).max),
}


def validate_inputs(
    metadata: ModelMetadata, inputs: Mapping[str, np.ndarray]
) -> dict[str, np.ndarray]:
    """The inputs typed and shaped as ``metadata`` declares, in declaration order."""
    expected = [spec.name for spec in metadata.inputs]
    unknown = [name for name in inputs if name not in expected]
    if unknown:
        raise BadRequest(f"unknown {_plural('input', unknown)} {_names(unknown)}{_hint(expected)}")
    missing = [name for name in expected if name not in inputs]
    if missing:
        raise BadRequest(f"missing {_plural('input', missing)} {_names(missing)}{_hint(expected)}")
    validated: dict[str, np.ndarray] = {}
    for spec in metadata.inputs:
        array = _fit_shape(spec, np.asarray(inputs[spec.name]))
        array = coerce(spec.name, array, spec.datatype, nullable=spec.nullable)
        if spec.allowed_values is not None and spec.datatype == "BYTES":
            _check_allowed(spec, array)
        validated[spec.name] = array
    _check_batch(metadata, validated)
    return validated


def select_outputs(
    outputs: Mapping[str, np.ndarray], requested: list[str] | None, metadata: ModelMetadata
) -> dict[str, np.ndarray]:
    """The outputs the client asked for, in its order; all of them when ``requested`` is None."""
    if requested is None:
        return dict(outputs)
    declared = [spec.name for spec in metadata.outputs]
    selected: dict[str, np.ndarray] = {}
    for name in requested:
        if name in outputs:
            selected[name] = outputs[name]
        elif name in declared:
            raise InferenceServerError(f"the model did not produce its output '{name}'")
        else:
            raise BadRequest(
                f"unknown output '{name}' requested; the model's outputs are "
                f"{_names(declared or list(outputs))}"
            )
    return selected


def check_requested_outputs(metadata: ModelMetadata, requested: list[str] | None) -> None:
    """Refuse unknown requested outputs before the model runs (``select_outputs`` also does)."""
    declared = [spec.name for spec in metadata.outputs]
    unknown = [name for name in requested or () if declared and name not in declared]
    if unknown:
        raise BadRequest(
            f"unknown output '{unknown[0]}' requested; the model's outputs are {_names(declared)}"
        )


def coerce(name: str, array: np.ndarray, datatype: str, *, nullable: bool = False) -> np.ndarray:
    """``array`` converted to ``datatype``, or ``BadRequest`` at the first element that won't go.

    Also used by the OIP codec to type data against the datatype the client declared.
    """
    kind = array.dtype.kind
    if datatype == "BYTES":
        return _to_bytes(name, array, nullable)
    if kind in "OUS":
        array = _objects_to_numbers(name, array, datatype, nullable)
        kind = array.dtype.kind
    if kind == "b":
        if datatype == "BOOL":
            return array
        _refuse(name, datatype, array, np.ones(array.shape, dtype=bool))
        return array.astype(numpy_dtype(datatype))  # only reached when empty
    if kind == "f":
        return _from_floats(name, array, datatype, nullable)
    if kind in "iu":
        return _from_ints(name, array, datatype)
    raise BadRequest(f"input '{name}': expected {_expected(datatype)}, got {array.dtype} data")


def _objects_to_numbers(name: str, array: np.ndarray, datatype: str, nullable: bool) -> np.ndarray:
    flat: list[Any] = array.ravel().tolist()
    missing_ok = nullable and datatype in FLOAT_DATATYPES
    types = set(map(type, flat))
    if datatype == "BOOL" and types <= {bool}:
        return np.array(flat, dtype=np.bool_).reshape(array.shape)
    if not types <= {int, float}:
        for index, value in enumerate(flat):
            if type(value) in (int, float):
                continue
            if value is None and missing_ok:
                flat[index] = math.nan
            elif isinstance(value, bool | np.bool_) and datatype == "BOOL":
                flat[index] = int(value)
            elif isinstance(value, np.integer | np.floating):
                flat[index] = value.item()
            else:
                _refuse_at(name, datatype, value, _unravel(index, array.shape))
    if datatype in FLOAT_DATATYPES:
        try:
            return np.array(flat, dtype=np.float64).reshape(array.shape)
        except OverflowError:  # an int beyond float64
            index = next(i for i, v in enumerate(flat) if abs(v) > _FLOAT_LIMITS["FP64"])
            _refuse_at(name, datatype, flat[index], _unravel(index, array.shape), _range(datatype))
    for index, value in enumerate(flat):
        if type(value) is float:
            if not value.is_integer():
                _refuse_at(name, datatype, value, _unravel(index, array.shape))
            flat[index] = int(value)
    limits = _int_limits(datatype)
    if flat and (min(flat) < limits[0] or max(flat) > limits[1]):
        index = next(i for i, v in enumerate(flat) if not limits[0] <= v <= limits[1])
        _refuse_at(name, datatype, flat[index], _unravel(index, array.shape), _range(datatype))
    return np.array(flat, dtype=np.int64 if limits[0] < 0 else np.uint64).reshape(array.shape)


def _from_floats(name: str, array: np.ndarray, datatype: str, nullable: bool) -> np.ndarray:
    target = numpy_dtype(datatype)
    finite = np.isfinite(array)
    if datatype in FLOAT_DATATYPES:
        bad = ~finite & ~np.isnan(array) if nullable else ~finite
        _refuse(name, datatype, array, bad)
        with np.errstate(over="ignore"):
            converted = array.astype(target, copy=False)
        _refuse(name, datatype, array, np.isinf(converted) & finite, _range(datatype))
        return converted
    with np.errstate(invalid="ignore"):
        _refuse(name, datatype, array, ~finite | (array != np.trunc(array)))
        low, high = _int_limits(datatype)
        # high + 1 is a power of two, so exact as a float: compare with it, not with high.
        out_of_range = (array < float(low)) | (array >= float(high + 1))
    _refuse(name, datatype, array, out_of_range, _range(datatype))
    return array.astype(target, copy=False)


def _from_ints(name: str, array: np.ndarray, datatype: str) -> np.ndarray:
    target = numpy_dtype(datatype)
    if datatype in FLOAT_DATATYPES:
        with np.errstate(over="ignore"):
            converted = array.astype(target, copy=False)
        _refuse(name, datatype, array, np.isinf(converted), _range(datatype))
        return converted
    low, high = _int_limits(datatype)
    if array.size and (int(array.min()) < low or int(array.max()) > high):
        index = next(i for i, v in enumerate(array.ravel().tolist()) if not low <= v <= high)
        value = array.ravel()[index]
        _refuse_at(name, datatype, value, _unravel(index, array.shape), _range(datatype))
    return array.astype(target, copy=False)


def _to_bytes(name: str, array: np.ndarray, nullable: bool) -> np.ndarray:
    if array.dtype.kind == "b" and array.size:
        _refuse_at(name, "BYTES", array.ravel()[0], _unravel(0, array.shape))
    flat: list[Any] = array.ravel().tolist()
    if not set(map(type, flat)) <= {str, bytes}:
        for index, raw in enumerate(flat):
            value = raw.item() if isinstance(raw, np.generic) else raw
            if isinstance(value, str | bytes):
                flat[index] = value
            elif isinstance(value, int) and not isinstance(value, bool):
                flat[index] = str(value)
            elif isinstance(value, float) and math.isfinite(value):
                flat[index] = str(int(value)) if value.is_integer() else repr(value)
            elif (value is None or (isinstance(value, float) and math.isnan(value))) and nullable:
                flat[index] = None
            else:
                _refuse_at(name, "BYTES", value, _unravel(index, array.shape))
    out = np.empty(len(flat), dtype=object)
    out[:] = flat
    return out.reshape(array.shape)


def _fit_shape(spec: TensorSpec, array: np.ndarray) -> np.ndarray:
    if array.ndim == 1 and len(spec.shape) == 2 and spec.shape[1] == 1:
        array = array.reshape(-1, 1)
    elif array.shape == (0,) and len(spec.shape) >= 2 and spec.shape[0] == -1:
        # An empty list is zero rows, whatever one row's shape: it holds no element.
        array = array.reshape((0, *(max(dim, 0) for dim in spec.shape[1:])))
    if not shape_matches(spec.shape, array.shape):
        raise BadRequest(
            f"input '{spec.name}': expected shape {format_shape(spec.shape)}, "
            f"got {format_shape(array.shape)}"
        )
    return array


def _check_allowed(spec: TensorSpec, array: np.ndarray) -> None:
    allowed = spec.allowed_values or ()
    accepted: set[str | bytes | None] = {*allowed, *(value.encode() for value in allowed), None}
    for index, value in enumerate(array.ravel().tolist()):
        if value not in accepted:
            listed = ", ".join(repr(value) for value in allowed[:_MAX_LISTED])
            if len(allowed) > _MAX_LISTED:
                listed += f", ... ({len(allowed) - _MAX_LISTED} more)"
            raise BadRequest(
                f"input '{spec.name}': expected one of {listed}; got {_category(value)} "
                f"at {format_position(_unravel(index, array.shape))}"
            )


def _category(value: Any) -> str:
    """A value refused by a categorical, quoted like the allowed ones: numbers reach the
    check as their text (``pclass: 4`` is ``'4'``), so calling it a string would mislead."""
    if isinstance(value, str):
        return repr(value if len(value) <= 40 else value[:37] + "...")
    return _describe(value)


def _check_batch(metadata: ModelMetadata, inputs: Mapping[str, np.ndarray]) -> None:
    sizes = {
        spec.name: inputs[spec.name].shape[0]
        for spec in metadata.inputs
        if spec.shape and spec.shape[0] == -1
    }
    if len(set(sizes.values())) > 1:
        listed = ", ".join(f"'{name}' has {size}" for name, size in sizes.items())
        raise BadRequest(f"inputs disagree on the batch size (dimension 0): {listed}")


# -- error messages ------------------------------------------------------------------------


def _refuse(name: str, datatype: str, array: np.ndarray, bad: np.ndarray, note: str = "") -> None:
    """Raise for the first element where ``bad`` is true, if any."""
    if bad.any():
        index = int(np.flatnonzero(bad)[0])
        _refuse_at(name, datatype, array.ravel()[index], _unravel(index, array.shape), note)


def _refuse_at(
    name: str, datatype: str, value: Any, position: tuple[int, ...], note: str = ""
) -> None:
    at = f" at {format_position(position)}" if position else ""
    missing = value is None or (isinstance(value, float | np.floating) and math.isnan(value))
    if missing and not note:
        note = (
            " (this input accepts no missing values)"
            if datatype in FLOAT_DATATYPES or datatype == "BYTES"
            else f" ({datatype} has no missing value)"
        )
    raise BadRequest(
        f"input '{name}': expected {_expected(datatype)}, got {_describe(value)}{at}{note}"
    )


def _expected(datatype: str) -> str:
    if datatype == "BYTES":
        return "BYTES (strings)"
    if datatype == "BOOL":
        return "BOOL values (true or false)"
    if datatype in FLOAT_DATATYPES:
        return f"{datatype} numbers"
    return f"{datatype} integers"


def _describe(value: Any) -> str:
    if isinstance(value, np.generic):
        value = value.item()
    if value is None:
        return "null"
    if isinstance(value, bool):
        return f"the boolean {str(value).lower()}"
    if isinstance(value, str):
        text = value if len(value) <= 40 else value[:37] + "..."
        return f"the string {text!r}"
    if isinstance(value, bytes):
        return f"binary data ({len(value)} bytes)"
    if isinstance(value, float):
        if math.isnan(value):
            return "NaN"
        if math.isinf(value):
            return "Infinity" if value > 0 else "-Infinity"
        if not value.is_integer():
            return f"the fraction {value!r}"
        # Integral floats are shown as the integer the client most likely wrote.
        return str(int(value)) if abs(value) < 1e16 else repr(value)
    if isinstance(value, int):
        return str(value)
    return f"a {type(value).__name__}"


def _range(datatype: str) -> str:
    if datatype in _FLOAT_LIMITS:
        return f" (out of range for {datatype}: magnitude at most {_FLOAT_LIMITS[datatype]:g})"
    low, high = _int_limits(datatype)
    return f" (out of range for {datatype}: {low} to {high})"


def _int_limits(datatype: str) -> tuple[int, int]:
    if datatype == "BOOL":
        return 0, 1
    info = np.iinfo(numpy_dtype(datatype))
    return int(info.min), int(info.max)


def _unravel(index: int, shape: tuple[int, ...]) -> tuple[int, ...]:
    if not shape:
        return ()
    return tuple(int(i) for i in np.unravel_index(index, shape))


def _plural(word: str, items: list[str]) -> str:
    return word if len(items) == 1 else word + "s"


def _names(names: list[str]) -> str:
    return ", ".join(f"'{name}'" for name in names)


def _hint(expected: list[str]) -> str:
    return f"; the model's inputs are {_names(expected)}" if expected else ""

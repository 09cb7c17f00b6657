"""The simple API: ``GET /v1/models/{m}/describe`` and ``POST /v1/models/{m}/eval``.

The eval body is a JSON object keyed by input name, in one of two forms:

- column form, values carry the batch: ``{"fare": [[7.25], [9.5]], "sex": [["male"], ["female"]]}``
  (for a ``[-1, 1]`` input a flat list ``[7.25, 9.5]`` is the same column);
- single-instance form, one example: ``{"fare": 7.25, "sex": "male"}``. For an input shaped
  like ``[-1, 1]`` (or ``[-1]``) an instance is a scalar; for any other input it is the
  value without the batch dimension (an ``[-1, 8, 8, 1]`` input takes ``8 x 8 x 1`` lists).

An empty list is a column of zero rows (``{"features": []}`` for a ``[-1, 4]`` input), since
no instance of a fixed-size input is empty; it is answered with zero-row outputs.

All inputs of one request use the same form. The answer mirrors it::

    {"model": "titanic", "version": "1", "outputs": {"probability": [[0.18], [0.93]]}}
    {"model": "titanic", "version": "1", "outputs": {"probability": 0.18}}

In the single-instance answer an output is its first (only) row, and a row of one element
is a scalar. ``{"b64": "..."}`` is a binary value both ways. Image-shaped inputs also take an
``image/png`` or ``image/jpeg`` body (``decode_eval_image``), answered as a single instance.

Which form a body was read as depends on the input shapes (``{"features": [5.1, 3.5, 1.4,
0.2]}`` is one instance of a ``[-1, 4]`` input, four of a ``[-1, 1]`` one), so the answer
says it in the ``X-Driftgate-Eval-Form`` header (``instance`` | ``columns``,
``EvalForm.header``): the gateway's prediction log splits the body into rows by it.
``describe`` lists inputs and outputs and builds example bodies of both forms from the
metadata. Errors are ``{"error": "..."}``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from runtime.codecs.json import (
    array_to_json,
    decode_json_object,
    is_b64_object,
    is_leaf,
    nested_to_array,
    utf8_or_b64,
)
from runtime.errors import BadRequest
from runtime.images import CONTENT_TYPES, ImageConfig, decode_image
from runtime.inference import InferenceRequest, InferenceResponse
from runtime.tensors import FLOAT_DATATYPES, ModelMetadata, TensorSpec

#: An instance with more elements than this gets a one-row column example only.
_SMALL_INSTANCE = 64


#: The eval answer's header naming the form the body was read as (``EvalForm.header``).
EVAL_FORM_HEADER = "X-Driftgate-Eval-Form"


@dataclass(frozen=True)
class EvalForm:
    """Whether the client sent one instance (answered with scalars) or columns."""

    single_instance: bool

    @property
    def header(self) -> dict[str, str]:
        """``X-Driftgate-Eval-Form: instance`` or ``columns``."""
        return {EVAL_FORM_HEADER: "instance" if self.single_instance else "columns"}


def describe(
    name: str,
    version: str,
    metadata: ModelMetadata,
    labels: Mapping[str, int] | None = None,
    image: ImageConfig | None = None,
) -> dict[str, Any]:
    """``GET /v1/models/{m}/describe``: the contract of one model version, with examples."""
    described: dict[str, Any] = {
        "model": name,
        "version": version,
        "platform": metadata.platform,
        "inputs": [_describe_tensor(spec) for spec in metadata.inputs],
        "outputs": [_describe_tensor(spec) for spec in metadata.outputs],
    }
    if labels:
        described["labels"] = dict(labels)
    if image is not None:
        described["image"] = {
            "input": image.input or (metadata.inputs[0].name if metadata.inputs else None),
            "content_types": list(CONTENT_TYPES),
            "width": image.width,
            "height": image.height,
            "color_mode": image.color_mode,
        }
    described["examples"] = {
        "instance": {spec.name: _example_instance(spec, 0) for spec in metadata.inputs},
        "columns": {spec.name: _example_column(spec) for spec in metadata.inputs},
    }
    return described


def decode_eval(body: bytes, metadata: ModelMetadata) -> tuple[InferenceRequest, EvalForm]:
    """Parse an eval body (column or single-instance form) into raw arrays."""
    payload = decode_json_object(body, images=True)
    for input_name, value in payload.items():
        # An object would otherwise count as a column and be reported as mixing the forms.
        if isinstance(value, dict) and not is_b64_object(value):
            raise BadRequest(
                f"input '{input_name}': expected a value or a list of values, got an object "
                '(binary values are written {"b64": "..."})'
            )
    forms = {name: _is_instance(metadata.input(name), value) for name, value in payload.items()}
    if len(set(forms.values())) > 1:
        single = next(name for name, instance in forms.items() if instance)
        column = next(name for name, instance in forms.items() if not instance)
        raise BadRequest(
            f"inputs mix the two forms: '{single}' is a single instance but '{column}' is a "
            "column (with a batch dimension); send every input as one value or every input "
            "as a column"
        )
    single_instance = bool(forms) and all(forms.values())
    inputs: dict[str, np.ndarray] = {}
    for input_name, value in payload.items():
        array = nested_to_array(value, input_name, allow_b64=True)
        if single_instance:
            array = _add_batch(metadata.input(input_name), array)
        inputs[input_name] = array
    return InferenceRequest(inputs=inputs), EvalForm(single_instance)


def decode_eval_image(
    body: bytes, content_type: str, config: ImageConfig, metadata: ModelMetadata
) -> tuple[InferenceRequest, EvalForm]:
    """An ``image/png`` / ``image/jpeg`` eval body: one instance of the configured input."""
    spec = config.input_spec(metadata)
    array = decode_image(body, content_type, config, spec)
    return InferenceRequest(inputs={spec.name: array}), EvalForm(single_instance=True)


def encode_eval(response: InferenceResponse, form: EvalForm) -> dict[str, Any]:
    """``{"model", "version", ["id",] "outputs": {name: value}}`` in the request's form."""
    answer: dict[str, Any] = {"model": response.model_name, "version": response.model_version}
    if response.id is not None:
        answer["id"] = response.id
    answer["outputs"] = {
        name: _instance_value(array) if form.single_instance else array_to_json(array, utf8_or_b64)
        for name, array in response.outputs.items()
    }
    return answer


def error_body(message: str) -> dict[str, str]:
    return {"error": message}


# -- helpers -------------------------------------------------------------------------------


def _is_tabular(spec: TensorSpec) -> bool:
    """A ``[-1]`` or ``[-1, 1]`` input: one scalar per row."""
    return len(spec.shape) >= 1 and all(dim == 1 for dim in spec.shape[1:])


def _is_instance(spec: TensorSpec | None, value: Any) -> bool:
    if spec is None or _is_tabular(spec):
        return is_leaf(value, allow_b64=True)
    if value == [] and spec.shape[1] > 0:
        # One instance of this input is never empty: an empty list is a column of zero rows.
        return False
    depth = 0
    while isinstance(value, list):
        depth += 1
        value = value[0] if value else None
    return depth == len(spec.shape) - 1


def _add_batch(spec: TensorSpec | None, array: np.ndarray) -> np.ndarray:
    if spec is not None and _is_tabular(spec) and array.ndim == 0:
        return array.reshape((1,) * len(spec.shape))
    return array[np.newaxis]


def _instance_value(array: np.ndarray) -> Any:
    if array.ndim == 0 or array.shape[0] != 1:
        return array_to_json(array, utf8_or_b64)
    row = array[0]
    if row.size == 1:
        row = row.reshape(())
    return array_to_json(row, utf8_or_b64)


def _describe_tensor(spec: TensorSpec) -> dict[str, Any]:
    described: dict[str, Any] = {
        "name": spec.name,
        "datatype": spec.datatype,
        "shape": list(spec.shape),
        "nullable": spec.nullable,
    }
    if spec.allowed_values is not None:
        described["allowed_values"] = list(spec.allowed_values)
    if spec.description:
        described["description"] = spec.description
    return described


def _example_scalar(spec: TensorSpec, row: int) -> Any:
    if spec.allowed_values:
        return spec.allowed_values[row % len(spec.allowed_values)]
    if spec.datatype == "BYTES":
        return "text"
    if spec.datatype == "BOOL":
        return row % 2 == 1
    if spec.datatype in FLOAT_DATATYPES:
        return float(row)
    return row


def _example_instance(spec: TensorSpec, row: int) -> Any:
    value = _example_scalar(spec, row)
    return value if _is_tabular(spec) or not spec.shape else _wrap(value, spec)


def _example_column(spec: TensorSpec) -> Any:
    if not spec.shape:
        return _example_scalar(spec, 0)
    dims = [1 if dim == -1 else dim for dim in spec.shape[1:]]
    rows = 2 if int(np.prod(dims)) <= _SMALL_INSTANCE else 1
    return [_wrap(_example_scalar(spec, row), spec) for row in range(rows)]


def _wrap(value: Any, spec: TensorSpec) -> Any:
    """``value`` repeated into the shape of one row (``spec.shape`` without the batch)."""
    for dim in reversed(spec.shape[1:]):
        value = [value] * (1 if dim == -1 else dim)
    return value

"""TF-Serving REST API codec: ``:predict``, model status and model metadata.

``POST /v1/models/{m}[/versions/{v}]:predict`` takes one of two forms, as TF-Serving does:

- row format ``{"instances": [...]}``: one entry per example, either an object by input name
  (``{"fare": 7.25, "sex": "male"}``) or, for a single-input model, the bare value;
  answered ``{"predictions": [...]}`` with one entry per row: the bare value when the model
  has one output, else an object by output name. ``{"instances": []}`` is zero rows of
  every input, answered ``{"predictions": []}``;
- columnar format ``{"inputs": {...}}``: an object by input name whose values carry the
  batch dimension, or a bare value for a single-input model; answered ``{"outputs": ...}``,
  the bare value when there is one output, else an object by output name.

``signature_name`` is accepted (the runtime serves one signature per model version). Binary
values are written ``{"b64": "..."}`` both ways: a request element decodes to ``bytes``; an
output element that is not UTF-8 text, or any element of an output whose name ends in
``_bytes`` (TF-Serving's rule), is answered as ``{"b64": ...}``. Errors are
``{"error": "..."}``.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np

from runtime.codecs.json import (
    array_to_json,
    b64_object,
    decode_json_object,
    is_leaf,
    json_kind,
    nested_to_array,
    utf8_or_b64,
)
from runtime.errors import BadRequest, InferenceServerError
from runtime.inference import InferenceRequest, InferenceResponse
from runtime.tensors import ModelMetadata, TensorSpec

_DTYPES = {
    "BOOL": "DT_BOOL",
    "UINT8": "DT_UINT8",
    "UINT16": "DT_UINT16",
    "UINT32": "DT_UINT32",
    "UINT64": "DT_UINT64",
    "INT8": "DT_INT8",
    "INT16": "DT_INT16",
    "INT32": "DT_INT32",
    "INT64": "DT_INT64",
    "FP16": "DT_HALF",
    "FP32": "DT_FLOAT",
    "FP64": "DT_DOUBLE",
    "BYTES": "DT_STRING",
}

#: Repository states (ours and TF-Serving's words) -> TF-Serving ``ModelVersionStatus.State``.
_STATES = {
    "START": "START",
    "LOADING": "LOADING",
    "READY": "AVAILABLE",
    "AVAILABLE": "AVAILABLE",
    "UNLOADING": "UNLOADING",
    "UNAVAILABLE": "END",
    "FAILED": "END",
    "END": "END",
}

DEFAULT_SIGNATURE = "serving_default"


@dataclass(frozen=True)
class PredictForm:
    """How the client asked, so that the answer comes back in the same form."""

    row_format: bool
    signature_name: str | None = None


def decode_predict(body: bytes, metadata: ModelMetadata) -> tuple[InferenceRequest, PredictForm]:
    """Parse a ``:predict`` body into raw (untyped) arrays; ``validate_inputs`` types them."""
    payload = decode_json_object(body)
    unknown = set(payload) - {"instances", "inputs", "signature_name"}
    if unknown:
        raise BadRequest(
            f"unknown field(s) {', '.join(sorted(repr(k) for k in unknown))} in the predict "
            "request; expected 'instances' (rows) or 'inputs' (columns), and 'signature_name'"
        )
    signature = payload.get("signature_name")
    if signature is not None and not isinstance(signature, str):
        raise BadRequest(f"'signature_name' must be a string, got {json_kind(signature)}")
    signature = signature or None  # "" is TF-Serving's default, and what metadata answers
    if ("instances" in payload) == ("inputs" in payload):
        raise BadRequest(
            "the predict request must have either 'instances' (row format) or 'inputs' "
            "(columnar format), and not both"
        )
    if "instances" in payload:
        inputs = _from_rows(payload["instances"], metadata)
    else:
        inputs = _from_columns(payload["inputs"], metadata)
    return InferenceRequest(inputs=inputs), PredictForm("instances" in payload, signature)


def encode_predict(response: InferenceResponse, form: PredictForm) -> dict[str, Any]:
    """``{"predictions": [...]}`` for the row format, ``{"outputs": ...}`` for columns."""
    outputs = response.outputs
    if not form.row_format:
        rendered = {name: _render(name, array) for name, array in outputs.items()}
        return {"outputs": _single_or_named(rendered)}
    sizes = {name: array.shape[0] if array.ndim else None for name, array in outputs.items()}
    if None in sizes.values() or len(set(sizes.values())) > 1:
        raise InferenceServerError(
            "the model's outputs have no common batch dimension, so they cannot be split "
            f"into rows ({sizes}); use the columnar format ('inputs')"
        )
    rows = next((size for size in sizes.values() if size is not None), 0)
    columns = {name: _render(name, array) for name, array in outputs.items()}
    predictions = [
        _single_or_named({name: column[row] for name, column in columns.items()})
        for row in range(rows)
    ]
    return {"predictions": predictions}


def model_status(name: str, versions: Iterable[tuple[str, str, str | None]]) -> dict[str, Any]:
    """``GET /v1/models/{m}[/versions/{v}]`` from ``(version, state, error)`` triples.

    ``state`` is a repository state (``READY``, ``LOADING``, ``UNAVAILABLE``) or a
    TF-Serving one. ``name`` is not repeated in TF-Serving's answer; it names the model in
    the error for an unknown state.
    """
    entries = []
    for version, state, error in sorted(versions, key=lambda v: _version_key(v[0]), reverse=True):
        tf_state = _STATES.get(state.upper())
        if tf_state is None:
            raise ValueError(f"model '{name}' version {version}: unknown state {state!r}")
        failed = {"error_code": "UNKNOWN", "error_message": error}
        status = failed if error else {"error_code": "OK", "error_message": ""}
        entries.append({"version": version, "state": tf_state, "status": status})
    return {"model_version_status": entries}


def model_metadata(name: str, version: str, metadata: ModelMetadata) -> dict[str, Any]:
    """``GET /v1/models/{m}[/versions/{v}]/metadata`` in TF-Serving's ``SignatureDefMap`` shape."""
    signature = str(metadata.extra.get("signature") or DEFAULT_SIGNATURE)
    return {
        "model_spec": {"name": name, "signature_name": "", "version": version},
        "metadata": {
            "signature_def": {
                "signature_def": {
                    signature: {
                        "inputs": {spec.name: _tensor_info(spec) for spec in metadata.inputs},
                        "outputs": {spec.name: _tensor_info(spec) for spec in metadata.outputs},
                        "method_name": "tensorflow/serving/predict",
                    }
                }
            }
        },
    }


def error_body(message: str) -> dict[str, str]:
    return {"error": message}


# -- helpers -------------------------------------------------------------------------------


def _from_rows(instances: Any, metadata: ModelMetadata) -> dict[str, np.ndarray]:
    if not isinstance(instances, list):
        raise BadRequest(f"'instances' must be a list of rows, got {json_kind(instances)}")
    if not instances:
        # No rows: zero rows of every input (validation shapes them), zero predictions.
        return {spec.name: np.empty(0, dtype=object) for spec in metadata.inputs}
    named = [isinstance(row, dict) and not is_leaf(row, allow_b64=True) for row in instances]
    if not any(named):
        single = _single_input(metadata, "instances")
        return {single: nested_to_array(instances, single, allow_b64=True)}
    if not all(named):
        row = named.index(False)
        raise BadRequest(
            f"instance {row} is not an object by input name like the others; every instance "
            "must have the same form"
        )
    names = list(instances[0])
    for row, instance in enumerate(instances):
        if set(instance) != set(names):
            missing = sorted(set(names) - set(instance)) or sorted(set(instance) - set(names))
            raise BadRequest(
                f"instance {row} has inputs {sorted(instance)} but instance 0 has "
                f"{sorted(names)} (differing: {missing}); every instance needs the same inputs"
            )
    return {
        name: nested_to_array([instance[name] for instance in instances], name, allow_b64=True)
        for name in names
    }


def _from_columns(columns: Any, metadata: ModelMetadata) -> dict[str, np.ndarray]:
    if isinstance(columns, dict) and not is_leaf(columns, allow_b64=True):
        return {
            name: nested_to_array(value, name, allow_b64=True) for name, value in columns.items()
        }
    single = _single_input(metadata, "inputs")
    return {single: nested_to_array(columns, single, allow_b64=True)}


def _single_input(metadata: ModelMetadata, field: str) -> str:
    if len(metadata.inputs) == 1:
        return metadata.inputs[0].name
    names = ", ".join(f"'{spec.name}'" for spec in metadata.inputs)
    raise BadRequest(
        f"the model has {len(metadata.inputs)} inputs ({names}); '{field}' must give "
        "objects keyed by input name"
    )


def _render(name: str, array: np.ndarray) -> Any:
    return array_to_json(array, b64_object if name.endswith("_bytes") else utf8_or_b64)


def _single_or_named(values: dict[str, Any]) -> Any:
    if len(values) == 1:
        return next(iter(values.values()))
    return values


def _tensor_info(spec: TensorSpec) -> dict[str, Any]:
    return {
        "dtype": _DTYPES[spec.datatype],
        "tensor_shape": {
            "dim": [{"size": str(size), "name": ""} for size in spec.shape],
            "unknown_rank": False,
        },
        "name": spec.name,
    }


def _version_key(version: str) -> tuple[int, str]:
    return (int(version), "") if version.isascii() and version.isdigit() else (-1, version)

"""Tensor descriptions shared by every backend, codec and pipeline step.

Datatypes use the Open Inference Protocol names (``FP32``, ``INT64``, ``BYTES``...): they are
what every dialect can express. Arrays inside the runtime are numpy arrays; ``BYTES`` tensors
are numpy ``object`` arrays holding ``str`` (text arrived as JSON) or ``bytes`` (binary, for
example TF-Serving's ``{"b64": ...}``). Backends convert to what their framework wants.

A dimension of ``-1`` in a shape means "any size" (usually the batch dimension).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

# Open Inference Protocol datatype -> numpy dtype.
DATATYPE_TO_NUMPY: dict[str, np.dtype[Any]] = {
    "BOOL": np.dtype(np.bool_),
    "UINT8": np.dtype(np.uint8),
    "UINT16": np.dtype(np.uint16),
    "UINT32": np.dtype(np.uint32),
    "UINT64": np.dtype(np.uint64),
    "INT8": np.dtype(np.int8),
    "INT16": np.dtype(np.int16),
    "INT32": np.dtype(np.int32),
    "INT64": np.dtype(np.int64),
    "FP16": np.dtype(np.float16),
    "FP32": np.dtype(np.float32),
    "FP64": np.dtype(np.float64),
    "BYTES": np.dtype(object),
}

NUMERIC_DATATYPES = frozenset(DATATYPE_TO_NUMPY) - {"BYTES", "BOOL"}
FLOAT_DATATYPES = frozenset({"FP16", "FP32", "FP64"})
#: The most dimensions a request's tensor may have: numpy's own limit is 64 (32 before
#: numpy 2), and no model of any supported format takes more than a handful.
MAX_RANK = 32


def datatype_of(array: np.ndarray) -> str:
    """The Open Inference Protocol datatype of a numpy array."""
    kind = array.dtype.kind
    if kind in "OUS":
        return "BYTES"
    for name, dtype in DATATYPE_TO_NUMPY.items():
        if dtype == array.dtype:
            return name
    raise ValueError(f"numpy dtype {array.dtype} has no Open Inference Protocol datatype")


def numpy_dtype(datatype: str) -> np.dtype[Any]:
    try:
        return DATATYPE_TO_NUMPY[datatype]
    except KeyError:
        known = ", ".join(DATATYPE_TO_NUMPY)
        raise ValueError(f"unknown datatype '{datatype}' (expected one of {known})") from None


@dataclass(frozen=True)
class TensorSpec:
    """Name, datatype and shape of one model input or output, read from the artefact.

    ``allowed_values`` lists the categories of a categorical input when the artefact knows
    them (PMML data dictionary, an encoder's vocabulary); ``nullable`` says whether a missing
    value (JSON ``null``, NaN) is acceptable, for example because an imputer handles it.
    """

    name: str
    datatype: str
    shape: tuple[int, ...]
    allowed_values: tuple[str, ...] | None = None
    nullable: bool = False
    description: str = ""

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "name": self.name,
            "datatype": self.datatype,
            "shape": list(self.shape),
        }
        if self.allowed_values is not None:
            out["allowed_values"] = list(self.allowed_values)
        if self.nullable:
            out["nullable"] = True
        if self.description:
            out["description"] = self.description
        return out


@dataclass(frozen=True)
class ModelMetadata:
    """What a loaded model version accepts and returns."""

    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    platform: str
    # Free-form facts a backend wants to expose (signature name, PMML function name...).
    extra: dict[str, Any] = field(default_factory=dict)

    def input(self, name: str) -> TensorSpec | None:
        return next((spec for spec in self.inputs if spec.name == name), None)

    def output(self, name: str) -> TensorSpec | None:
        return next((spec for spec in self.outputs if spec.name == name), None)


def shape_matches(expected: Sequence[int], actual: Sequence[int]) -> bool:
    """True when ``actual`` fits ``expected`` (same rank, ``-1`` matches any size)."""
    if len(expected) != len(actual):
        return False
    return all(want in (-1, got) for want, got in zip(expected, actual, strict=True))


def format_shape(shape: Sequence[int]) -> str:
    return "[" + ", ".join("?" if dim == -1 else str(dim) for dim in shape) + "]"

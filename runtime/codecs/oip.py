"""Open Inference Protocol v2 (KServe / Triton / MLServer REST), binary extension included.

Request (``POST /v2/models/{m}[/versions/{v}]/infer``)::

    {"id": "42", "parameters": {...},
     "inputs": [{"name": "x", "shape": [2, 1], "datatype": "FP32", "data": [1.5, 2.5]}],
     "outputs": [{"name": "y", "parameters": {"binary_data": true}}]}

``data`` is row-major, flat or nested; its element count must match ``shape``. With Triton's
*binary tensor data extension* (what ``tritonclient.http`` sends by default) the JSON is
followed by raw tensor bytes: the ``Inference-Header-Content-Length`` request header gives the
JSON's length and each binary input carries ``parameters.binary_data_size``; the chunks follow
in input order, little-endian, row-major; BOOL is one byte, FP16 two, and a BYTES element is
a 4-byte little-endian length and then its bytes. The chunks are decoded by
``monitoring.binary_tensors``, which the gateway's recorder reads them back with; this
codec adds the checks that make a request valid and words them as a 400.

An output is answered as binary when its request entry says ``"binary_data": true``, or when
the request's ``parameters.binary_data_output`` is true and the entry does not say otherwise.
Then the response body is the JSON followed by the chunks, with the headers
``Content-Type: application/octet-stream`` and ``Inference-Header-Content-Length``. A pure JSON
response is ``application/json``. Errors are ``{"error": "..."}``.

``decode_infer_request`` returns the dialect-neutral request and an ``InferForm`` (request id,
binary output wishes) that ``encode_infer_response`` needs to answer in kind.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Annotated, Any

import msgspec
import numpy as np

from monitoring import binary_tensors
from monitoring.binary_tensors import LENGTH_PREFIX, BinaryDataError, decode_chunk, split_body
from runtime.codecs.json import flat_json_values, nested_to_array, not_json_hint
from runtime.errors import BadRequest
from runtime.inference import InferenceRequest, InferenceResponse
from runtime.tensors import (
    DATATYPE_TO_NUMPY,
    MAX_RANK,
    ModelMetadata,
    datatype_of,
    format_shape,
)
from runtime.validation import coerce

HEADER_LENGTH = binary_tensors.HEADER_LENGTH
JSON_CONTENT_TYPE = "application/json"
BINARY_CONTENT_TYPE = "application/octet-stream"
#: Extensions to list in server metadata: what this codec implements.
EXTENSIONS = ("binary_tensor_data",)

#: The most elements a declared shape may describe (dimensions of 0 counted as 1): far past
#: any body the runtime accepts, far below what numpy refuses.
MAX_ELEMENTS = 2**40


@dataclass(frozen=True)
class InferForm:
    """What ``encode_infer_response`` needs to remember from the request."""

    id: str | None = None
    #: Request-level ``parameters.binary_data_output``.
    binary_data_output: bool = False
    #: Per requested output: its ``parameters.binary_data`` when the client set it.
    binary_data: dict[str, bool] = field(default_factory=dict)

    def wants_binary(self, output: str) -> bool:
        return self.binary_data.get(output, self.binary_data_output)


class _Input(msgspec.Struct):
    name: str
    shape: list[Annotated[int, msgspec.Meta(ge=0)]]
    datatype: str
    parameters: dict[str, Any] = {}
    data: Any = msgspec.UNSET


class _Output(msgspec.Struct):
    name: str
    parameters: dict[str, Any] = {}


class _Request(msgspec.Struct):
    inputs: list[_Input]
    id: str | None = None
    parameters: dict[str, Any] = {}
    outputs: list[_Output] | None = None


def decode_infer_request(
    body: bytes, header_length: int | str | None = None
) -> tuple[InferenceRequest, InferForm]:
    """Parse an infer request; ``header_length`` is the ``Inference-Header-Content-Length``."""
    head, binary = _split(body, header_length)
    if not head.strip():
        raise BadRequest("the request body is empty; expected an inference request (JSON)")
    try:
        raw = msgspec.json.decode(head, type=_Request)
    except msgspec.ValidationError as exc:
        raise BadRequest(f"invalid inference request: {exc}") from None
    except msgspec.DecodeError as exc:
        hint = ""
        if header_length is None and "trailing characters" in str(exc):
            hint = (
                f"; binary tensor data after the JSON needs the {HEADER_LENGTH} header to say "
                "where the JSON ends"
            )
        hint = hint or not_json_hint(head)
        raise BadRequest(f"the inference request is not valid JSON: {exc}{hint}") from None
    except UnicodeDecodeError as exc:  # msgspec raises this, not DecodeError, inside strings
        raise BadRequest(
            f"the inference request is not valid JSON: a string is not UTF-8 ({exc.reason})"
        ) from None
    except RecursionError:
        raise BadRequest("the inference request is nested too deeply") from None

    inputs: dict[str, np.ndarray] = {}
    offset = 0
    for item in raw.inputs:
        if item.name in inputs:
            raise BadRequest(f"input '{item.name}' appears more than once")
        _refuse_shared_memory(f"input '{item.name}'", item.parameters)
        datatype = _datatype(item)
        _check_shape(item)
        size = item.parameters.get("binary_data_size")
        if size is None:
            inputs[item.name] = _from_json(item, datatype)
            continue
        if item.data is not msgspec.UNSET:
            raise BadRequest(f"input '{item.name}' has both 'data' and binary_data_size")
        if type(size) is not int or size < 0:
            raise BadRequest(
                f"input '{item.name}': binary_data_size must be a non-negative integer, "
                f"got {size!r}"
            )
        if header_length is None:
            raise BadRequest(
                f"input '{item.name}' has binary_data_size but the request has no "
                f"{HEADER_LENGTH} header to say where the binary data starts"
            )
        if offset + size > len(binary):
            raise BadRequest(
                f"input '{item.name}': binary_data_size is {size} bytes but only "
                f"{len(binary) - offset} bytes of binary data remain"
            )
        inputs[item.name] = _from_binary(item, datatype, binary[offset : offset + size])
        offset += size
    if offset != len(binary):
        raise BadRequest(
            f"the request has {len(binary) - offset} bytes of binary data that no input claims"
        )
    requested, per_output = _requested_outputs(raw.outputs)
    binary_data_output = raw.parameters.get("binary_data_output", False)
    if not isinstance(binary_data_output, bool):
        raise BadRequest("parameters.binary_data_output must be true or false")
    request = InferenceRequest(
        inputs=inputs, id=raw.id, outputs=requested, parameters=dict(raw.parameters)
    )
    return request, InferForm(raw.id, binary_data_output, per_output)


def encode_infer_response(
    response: InferenceResponse, form: InferForm
) -> tuple[bytes, dict[str, str]]:
    """The response body and the headers to send with it (content type, header length)."""
    outputs: list[dict[str, Any]] = []
    chunks: list[bytes] = []
    for name, array in response.outputs.items():
        datatype = datatype_of(array)
        entry: dict[str, Any] = {"name": name, "datatype": datatype, "shape": list(array.shape)}
        if form.wants_binary(name):
            chunk = _to_binary(array, datatype)
            entry["parameters"] = {"binary_data_size": len(chunk)}
            chunks.append(chunk)
        else:
            entry["data"] = flat_json_values(array, _lossy_text)
        outputs.append(entry)
    header: dict[str, Any] = {
        "model_name": response.model_name,
        "model_version": response.model_version,
    }
    request_id = response.id if response.id is not None else form.id
    if request_id is not None:
        header["id"] = request_id
    if response.parameters:
        header["parameters"] = response.parameters
    header["outputs"] = outputs
    head = msgspec.json.encode(header)
    if not chunks:
        return head, {"Content-Type": JSON_CONTENT_TYPE}
    headers = {"Content-Type": BINARY_CONTENT_TYPE, HEADER_LENGTH: str(len(head))}
    return head + b"".join(chunks), headers


def server_metadata(
    name: str, version: str, extensions: list[str] | tuple[str, ...] = EXTENSIONS
) -> dict[str, Any]:
    """``GET /v2``."""
    return {"name": name, "version": version, "extensions": list(extensions)}


def model_metadata(
    name: str, versions: list[str], platform: str, metadata: ModelMetadata
) -> dict[str, Any]:
    """``GET /v2/models/{m}[/versions/{v}]``: ``$metadata_tensor`` is name, datatype, shape."""
    return {
        "name": name,
        "versions": list(versions),
        "platform": platform,
        "inputs": [_tensor(spec.name, spec.datatype, spec.shape) for spec in metadata.inputs],
        "outputs": [_tensor(spec.name, spec.datatype, spec.shape) for spec in metadata.outputs],
    }


def error_body(message: str) -> dict[str, str]:
    return {"error": message}


# -- decoding helpers ----------------------------------------------------------------------


def _split(body: bytes, header_length: int | str | None) -> tuple[bytes, bytes]:
    try:
        return split_body(body, header_length)
    except BinaryDataError as exc:
        raise BadRequest(str(exc)) from None


def _datatype(item: _Input) -> str:
    if item.datatype not in DATATYPE_TO_NUMPY:
        raise BadRequest(
            f"input '{item.name}': unknown datatype '{item.datatype}' "
            f"(expected one of {', '.join(DATATYPE_TO_NUMPY)})"
        )
    return item.datatype


def _check_shape(item: _Input) -> None:
    """A shape numpy can hold: at most ``MAX_RANK`` dimensions, and at most ``MAX_ELEMENTS``
    counting a dimension of 0 as 1 (``[0, 2**62]`` holds no element but no array has it)."""
    if len(item.shape) > MAX_RANK:
        raise BadRequest(
            f"input '{item.name}': shape has {len(item.shape)} dimensions; a tensor has at "
            f"most {MAX_RANK}"
        )
    if math.prod(max(dim, 1) for dim in item.shape) > MAX_ELEMENTS:
        raise BadRequest(
            f"input '{item.name}': shape {format_shape(item.shape)} is too large "
            f"(over {MAX_ELEMENTS} elements, counting a dimension of 0 as 1)"
        )


def _from_json(item: _Input, datatype: str) -> np.ndarray:
    if item.data is msgspec.UNSET:
        raise BadRequest(
            f"input '{item.name}' has no data: give 'data' or parameters.binary_data_size"
        )
    count = math.prod(item.shape)
    values = nested_to_array(item.data, item.name).ravel()
    if values.size != count:
        raise BadRequest(
            f"input '{item.name}': shape {format_shape(item.shape)} holds {count} elements "
            f"but data has {values.size}"
        )
    # Missing values are judged against the model's spec later (runtime.validation).
    return coerce(item.name, values.reshape(item.shape), datatype, nullable=True)


def _from_binary(item: _Input, datatype: str, chunk: bytes) -> np.ndarray:
    try:
        return decode_chunk(chunk, datatype, item.shape)
    except BinaryDataError as exc:
        raise BadRequest(f"input '{item.name}': {exc}") from None


def _requested_outputs(outputs: list[_Output] | None) -> tuple[list[str] | None, dict[str, bool]]:
    if not outputs:
        return None, {}
    names: list[str] = []
    binary: dict[str, bool] = {}
    for output in outputs:
        where = f"output '{output.name}'"
        _refuse_shared_memory(where, output.parameters)
        if output.parameters.get("classification") not in (None, 0):
            raise BadRequest(f"{where}: the classification extension is not supported")
        wanted = output.parameters.get("binary_data")
        if wanted is not None:
            if not isinstance(wanted, bool):
                raise BadRequest(f"{where}: parameters.binary_data must be true or false")
            binary[output.name] = wanted
        if output.name not in names:
            names.append(output.name)
    return names, binary


def _refuse_shared_memory(where: str, parameters: dict[str, Any]) -> None:
    if any(key.startswith("shared_memory") for key in parameters):
        raise BadRequest(f"{where}: shared memory is not supported; send the data in the body")


# -- encoding helpers ----------------------------------------------------------------------


def _to_binary(array: np.ndarray, datatype: str) -> bytes:
    if datatype != "BYTES":
        dtype = DATATYPE_TO_NUMPY[datatype]
        return np.ascontiguousarray(array, dtype=dtype.newbyteorder("<")).tobytes()
    parts: list[bytes] = []
    for item in array.ravel().tolist():
        data = _element_bytes(item)
        parts.append(LENGTH_PREFIX.pack(len(data)))
        parts.append(data)
    return b"".join(parts)


def _element_bytes(item: Any) -> bytes:
    if isinstance(item, bytes):
        return item
    if item is None:
        return b""
    return str(item).encode("utf-8")


def _lossy_text(data: bytes) -> str:
    # JSON strings must be text; a client that needs exact bytes asks for binary_data.
    return data.decode("utf-8", errors="replace")


def _tensor(name: str, datatype: str, shape: tuple[int, ...]) -> dict[str, Any]:
    return {"name": name, "datatype": datatype, "shape": list(shape)}

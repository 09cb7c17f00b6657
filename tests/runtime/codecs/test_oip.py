"""Open Inference Protocol v2: proven against the real ``tritonclient.http`` wire format.

Requests are built by the client's own body builder and responses parsed by its own
``InferResult``, so what passes here works with an unmodified client and no server.
"""

from __future__ import annotations

import json
import struct
from typing import Any

import numpy as np
import pytest
import tritonclient.http as triton

from runtime.codecs.oip import (
    HEADER_LENGTH,
    InferForm,
    decode_infer_request,
    encode_infer_response,
    error_body,
    model_metadata,
    server_metadata,
)
from runtime.errors import BadRequest
from runtime.inference import InferenceResponse
from runtime.validation import select_outputs, validate_inputs
from tests.runtime.codecs import titanic_metadata

SAMPLES: dict[str, np.ndarray] = {
    "BOOL": np.array([[True, False, True]]),
    "UINT8": np.array([[0, 7, 255]], dtype=np.uint8),
    "UINT16": np.array([[0, 7, 65535]], dtype=np.uint16),
    "UINT32": np.array([[0, 7, 2**32 - 1]], dtype=np.uint32),
    "UINT64": np.array([[0, 7, 2**64 - 1]], dtype=np.uint64),
    "INT8": np.array([[-128, 0, 127]], dtype=np.int8),
    "INT16": np.array([[-32768, 0, 32767]], dtype=np.int16),
    "INT32": np.array([[-(2**31), 0, 2**31 - 1]], dtype=np.int32),
    "INT64": np.array([[-(2**63), 0, 2**63 - 1]], dtype=np.int64),
    "FP16": np.array([[0.1, -2.5, 65504]], dtype=np.float16),
    "FP32": np.array([[0.1, -2.5, 3.4e38]], dtype=np.float32),
    "FP64": np.array([[0.1, -2.5, 1e308]], dtype=np.float64),
    "BYTES": np.array([[b"male", "café".encode(), b""]], dtype=object),
}


def client_request(
    arrays: dict[str, np.ndarray],
    binary_inputs: bool = True,
    outputs: list[Any] | None = None,
    **kwargs: Any,
) -> tuple[bytes, int | None]:
    inputs = []
    for name, array in arrays.items():
        datatype = "BYTES" if array.dtype == object else triton.np_to_triton_dtype(array.dtype)
        tensor = triton.InferInput(name, list(array.shape), datatype)
        tensor.set_data_from_numpy(array, binary_data=binary_inputs)
        inputs.append(tensor)
    body, header_length = triton.InferenceServerClient.generate_request_body(
        inputs, outputs=outputs, **kwargs
    )
    return body, header_length


def client_result(body: bytes, headers: dict[str, str]) -> Any:
    length = headers.get(HEADER_LENGTH)
    return triton.InferenceServerClient.parse_response_body(
        body, header_length=int(length) if length is not None else None
    )


def echo(arrays: dict[str, np.ndarray], request_id: str | None = None) -> InferenceResponse:
    return InferenceResponse("echo", "1", dict(arrays), id=request_id)


def refused(body: bytes | dict[str, Any], header_length: int | str | None = None) -> str:
    raw = json.dumps(body).encode() if isinstance(body, dict) else body
    with pytest.raises(BadRequest) as info:
        decode_infer_request(raw, header_length)
    return info.value.message


@pytest.mark.parametrize("datatype", list(SAMPLES))
@pytest.mark.parametrize("binary_inputs", [True, False], ids=["binary-in", "json-in"])
@pytest.mark.parametrize("binary_outputs", [True, False], ids=["binary-out", "json-out"])
def test_every_datatype_round_trips_through_tritonclient(
    datatype: str, binary_inputs: bool, binary_outputs: bool
) -> None:
    sample = SAMPLES[datatype]
    outputs = [triton.InferRequestedOutput("x", binary_data=binary_outputs)]
    body, header_length = client_request({"x": sample}, binary_inputs, outputs)
    assert (header_length is not None) == binary_inputs

    request, form = decode_infer_request(body, header_length)
    decoded = request.inputs["x"]
    assert decoded.shape == sample.shape
    if datatype == "BYTES":
        # Binary carries the exact bytes; JSON carries text.
        assert decoded.tolist() == (sample.tolist() if binary_inputs else [["male", "café", ""]])
    else:
        assert decoded.dtype == sample.dtype
        assert np.array_equal(decoded, sample)

    response_body, headers = encode_infer_response(echo(request.inputs), form)
    result = client_result(response_body, headers)
    answered = result.as_numpy("x")
    assert answered.shape == sample.shape
    if datatype == "BYTES":
        as_bytes = [v if isinstance(v, bytes) else v.encode() for v in answered.ravel()]
        assert as_bytes == sample.ravel().tolist()
    else:
        assert answered.dtype == sample.dtype
        assert np.array_equal(answered, sample)
    binary_sent = "binary_data_size" in result.get_output("x").get("parameters", {})
    assert binary_sent == binary_outputs


def test_default_tritonclient_call_gets_every_output_as_binary() -> None:
    body, header_length = client_request({"x": SAMPLES["FP32"]}, request_id="req-7")
    request, form = decode_infer_request(body, header_length)
    assert request.id == "req-7" and request.outputs is None
    assert form == InferForm(id="req-7", binary_data_output=True)
    response_body, headers = encode_infer_response(echo(request.inputs), form)
    assert headers["Content-Type"] == "application/octet-stream"
    head_size = int(headers[HEADER_LENGTH])
    head = json.loads(response_body[:head_size])
    assert head == {
        "model_name": "echo",
        "model_version": "1",
        "id": "req-7",
        "outputs": [
            {
                "name": "x",
                "datatype": "FP32",
                "shape": [1, 3],
                "parameters": {"binary_data_size": 12},
            }
        ],
    }
    assert response_body[head_size:] == SAMPLES["FP32"].astype("<f4").tobytes()
    assert client_result(response_body, headers).get_response()["id"] == "req-7"


def test_a_whole_titanic_request_from_tritonclient_validates_and_answers() -> None:
    arrays = {
        "pclass": np.array([[b"3"], [b"1"]], dtype=object),
        "sex": np.array([[b"male"], [b"female"]], dtype=object),
        "age": np.array([[22.0], [np.nan]], dtype=np.float32),
        "fare": np.array([[7], [71]], dtype=np.int64),  # ints for an FP32 input: converted
        "embarked": np.array([[b"S"], [b"C"]], dtype=object),
    }
    outputs = [
        triton.InferRequestedOutput("probability", binary_data=False),
        triton.InferRequestedOutput("survived"),
    ]
    body, header_length = client_request(arrays, outputs=outputs)
    request, form = decode_infer_request(body, header_length)
    metadata = titanic_metadata()
    inputs = validate_inputs(metadata, request.inputs)
    assert inputs["fare"].dtype == np.float32 and inputs["fare"].tolist() == [[7.0], [71.0]]
    assert np.isnan(inputs["age"][1, 0])
    model_outputs: dict[str, np.ndarray] = {
        "survived": np.array([[0], [1]], dtype=np.int64),
        "probability": np.array([[0.1], [0.8]], dtype=np.float32),
    }
    selected = select_outputs(model_outputs, request.outputs, metadata)
    body_out, headers = encode_infer_response(InferenceResponse("titanic", "2", selected), form)
    result = client_result(body_out, headers)
    assert result.as_numpy("survived").tolist() == [[0], [1]]
    assert np.array_equal(result.as_numpy("probability"), model_outputs["probability"])
    # JSON output carries the float32 values' shortest decimals.
    assert result.get_output("probability")["data"] == [0.1, 0.8]
    assert [o["name"] for o in result.get_response()["outputs"]] == ["probability", "survived"]


def test_json_request_with_nested_data_and_json_response() -> None:
    body = {
        "id": "abc",
        "inputs": [{"name": "x", "shape": [2, 2], "datatype": "FP32", "data": [[1, 2], [3, 4.5]]}],
    }
    request, form = decode_infer_request(json.dumps(body).encode())
    assert request.inputs["x"].dtype == np.float32
    assert request.inputs["x"].tolist() == [[1, 2], [3, 4.5]]
    response_body, headers = encode_infer_response(
        echo({"y": np.array([[0.5, np.nan]], dtype=np.float32)}), form
    )
    assert headers == {"Content-Type": "application/json"}
    assert json.loads(response_body) == {
        "model_name": "echo",
        "model_version": "1",
        "id": "abc",
        "outputs": [{"name": "y", "datatype": "FP32", "shape": [1, 2], "data": [0.5, None]}],
    }


def test_a_per_output_choice_beats_binary_data_output() -> None:
    body = {
        "parameters": {"binary_data_output": True},
        "inputs": [{"name": "x", "shape": [1], "datatype": "INT32", "data": [1]}],
        "outputs": [{"name": "a", "parameters": {"binary_data": False}}, {"name": "b"}],
    }
    request, form = decode_infer_request(json.dumps(body).encode())
    assert request.outputs == ["a", "b"]
    assert request.parameters == {"binary_data_output": True}
    assert not form.wants_binary("a") and form.wants_binary("b")


def test_bytes_output_that_is_not_utf8_is_still_valid_json() -> None:
    response = echo({"s": np.array([b"\xff", "ok"], dtype=object)})
    body, _ = encode_infer_response(response, InferForm())
    assert json.loads(body)["outputs"][0]["data"] == ["\ufffd", "ok"]


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (b'{"inputs": [', "the inference request is not valid JSON: Input data was truncated"),
        (b'{"inputs": [NaN]}', "not valid JSON: JSON is malformed: invalid character (byte 12)"),
        (b"[]", "invalid inference request: Expected `object`, got `array`"),
        (b"{}", "invalid inference request: Object missing required field `inputs`"),
        (b"", "the request body is empty"),
        (
            b'{"inputs": [{"name": "x", "shape": [-1], "datatype": "FP32", "data": []}]}',
            "Expected `int` >= 0 - at `$.inputs[0].shape[0]`",
        ),
        (
            b'{"inputs": [{"name": "x", "shape": [1], "data": [1]}]}',
            "Object missing required field `datatype` - at `$.inputs[0]`",
        ),
        (b'{"id": 5, "inputs": []}', "Expected `str | null`, got `int` - at `$.id`"),
    ],
)
def test_malformed_requests(body: bytes, expected: str) -> None:
    assert expected in refused(body)


def tensor(**fields: Any) -> dict[str, Any]:
    base: dict[str, Any] = {"name": "x", "shape": [2, 1], "datatype": "FP32", "data": [1, 2]}
    base.update(fields)
    return {"inputs": [{k: v for k, v in base.items() if v is not None}]}


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (tensor(shape=[2, 3]), "input 'x': shape [2, 3] holds 6 elements but data has 2"),
        (tensor(data=[[1], [2], [3]]), "input 'x': shape [2, 1] holds 2 elements but data has 3"),
        (
            tensor(datatype="FLOAT32"),
            "input 'x': unknown datatype 'FLOAT32' (expected one of BOOL,",
        ),
        (tensor(datatype="BF16"), "unknown datatype 'BF16'"),
        (
            tensor(data=[1, "abc"]),
            "input 'x': expected FP32 numbers, got the string 'abc' at [1, 0]",
        ),
        (tensor(datatype="INT8", data=[1, 300]), "got 300 at [1, 0] (out of range for INT8"),
        (tensor(datatype="BOOL", data=[True, "no"]), "expected BOOL values (true or false)"),
        (tensor(data=None), "input 'x' has no data: give 'data' or parameters.binary_data_size"),
        (tensor(data=[[1, 2], [3]]), "nested lists must be rectangular"),
        (
            {"inputs": tensor()["inputs"] * 2},
            "input 'x' appears more than once",
        ),
        (
            tensor(parameters={"shared_memory_region": "r"}),
            "input 'x': shared memory is not supported",
        ),
        (
            tensor(parameters={"binary_data_size": 8}),
            "input 'x' has both 'data' and binary_data_size",
        ),
        (
            tensor(data=None, parameters={"binary_data_size": 8}),
            "has binary_data_size but the request has no Inference-Header-Content-Length header",
        ),
        (
            {**tensor(), "outputs": [{"name": "y", "parameters": {"classification": 3}}]},
            "output 'y': the classification extension is not supported",
        ),
        (
            {**tensor(), "outputs": [{"name": "y", "parameters": {"binary_data": "yes"}}]},
            "output 'y': parameters.binary_data must be true or false",
        ),
        (
            {**tensor(), "parameters": {"binary_data_output": 1}},
            "parameters.binary_data_output must be true or false",
        ),
    ],
)
def test_bad_tensors_are_named(body: dict[str, Any], expected: str) -> None:
    assert expected in refused(body)


def binary_request(inputs: list[dict[str, Any]], data: bytes) -> tuple[bytes, int]:
    head = json.dumps({"inputs": inputs}).encode()
    return head + data, len(head)


def test_binary_size_must_fit_the_shape() -> None:
    spec = {"name": "x", "shape": [2], "datatype": "FP32", "parameters": {"binary_data_size": 4}}
    body, length = binary_request([spec], b"\0" * 4)
    assert refused(body, length) == (
        "input 'x': binary_data_size is 4 bytes but shape [2] of FP32 needs 8"
    )


def test_binary_data_without_the_header_says_the_header_is_missing() -> None:
    spec = {"name": "x", "shape": [1], "datatype": "FP32", "parameters": {"binary_data_size": 4}}
    body, _ = binary_request([spec], b"\0\0\x80?")
    message = refused(body)
    assert message.startswith("the inference request is not valid JSON: ")
    assert message.endswith(
        "binary tensor data after the JSON needs the Inference-Header-Content-Length header "
        "to say where the JSON ends"
    )


def test_binary_data_beyond_the_body_or_left_over_is_refused() -> None:
    spec = {"name": "x", "shape": [2], "datatype": "FP32", "parameters": {"binary_data_size": 8}}
    body, length = binary_request([spec], b"\0" * 4)
    assert "binary_data_size is 8 bytes but only 4 bytes of binary data remain" in refused(
        body, length
    )
    body, length = binary_request([spec], b"\0" * 12)
    assert refused(body, length) == "the request has 4 bytes of binary data that no input claims"


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (struct.pack("<I", 5) + b"ab", "BYTES element 0 claims 5 bytes but only 2 remain"),
        (struct.pack("<I", 1) + b"a" + b"\x01\x00", "BYTES binary data ends inside a length"),
        (struct.pack("<I", 1) + b"a", "shape [2] holds 2 elements but the BYTES binary data has 1"),
        (struct.pack("<II", 0, 0) + struct.pack("<I", 0), "holds more than the 2 elements"),
    ],
)
def test_broken_bytes_binary_data(data: bytes, expected: str) -> None:
    spec = {
        "name": "s",
        "shape": [2],
        "datatype": "BYTES",
        "parameters": {"binary_data_size": len(data)},
    }
    body, length = binary_request([spec], data)
    assert expected in refused(body, length)


def test_bool_binary_bytes_must_be_zero_or_one() -> None:
    spec = {"name": "b", "shape": [2], "datatype": "BOOL", "parameters": {"binary_data_size": 2}}
    body, length = binary_request([spec], b"\x01\x02")
    assert refused(body, length) == "input 'b': BOOL binary data must be bytes 0 or 1"


@pytest.mark.parametrize("header_length", ["abc", -1, 10_000, "1.5"])
def test_a_bad_header_length_is_refused(header_length: int | str) -> None:
    assert refused(json.dumps(tensor()).encode(), header_length).startswith(
        "Inference-Header-Content-Length must be an integer between 0 and the body's"
    )


def test_header_length_may_be_given_as_the_header_string() -> None:
    body, length = client_request({"x": SAMPLES["INT64"]})
    request, _ = decode_infer_request(body, str(length))
    assert request.inputs["x"].tolist() == SAMPLES["INT64"].tolist()


def test_server_and_model_metadata_have_the_protocol_shapes() -> None:
    assert server_metadata("driftgate", "0.1.0") == {
        "name": "driftgate",
        "version": "0.1.0",
        "extensions": ["binary_tensor_data"],
    }
    described = model_metadata("titanic", ["1", "2"], "onnx", titanic_metadata())
    assert described["name"] == "titanic" and described["versions"] == ["1", "2"]
    assert described["platform"] == "onnx"
    assert described["inputs"][1] == {"name": "sex", "datatype": "BYTES", "shape": [-1, 1]}
    assert described["outputs"][1] == {"name": "probability", "datatype": "FP32", "shape": [-1, 1]}
    assert error_body("boom") == {"error": "boom"}


def test_a_json_head_with_a_byte_order_mark_says_so() -> None:
    with pytest.raises(BadRequest) as info:
        decode_infer_request(b'\xef\xbb\xbf{"inputs": []}')
    assert info.value.message.endswith(
        "; it starts with a UTF-8 byte order mark; send the JSON without it"
    )

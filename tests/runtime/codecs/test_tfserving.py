"""TF-Serving REST: rows and columns in, the same form out; status and metadata shapes."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pytest

from runtime.codecs.tfserving import (
    PredictForm,
    decode_predict,
    encode_predict,
    error_body,
    model_metadata,
    model_status,
)
from runtime.errors import BadRequest, InferenceServerError
from runtime.inference import InferenceResponse
from runtime.tensors import ModelMetadata, TensorSpec
from runtime.validation import validate_inputs
from tests.runtime.codecs import titanic_metadata

SINGLE = ModelMetadata(
    inputs=(TensorSpec("pixels", "FP32", (-1, 2)),),
    outputs=(TensorSpec("score", "FP32", (-1,)),),
    platform="savedmodel",
    extra={"signature": "predict_images"},
)
BLOB = ModelMetadata(
    inputs=(TensorSpec("blob", "BYTES", (-1,)),), outputs=(), platform="savedmodel"
)


def decode(payload: dict[str, Any] | bytes, metadata: ModelMetadata = SINGLE) -> Any:
    body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    return decode_predict(body, metadata)


def refused(payload: dict[str, Any] | bytes, metadata: ModelMetadata = SINGLE) -> str:
    with pytest.raises(BadRequest) as info:
        decode(payload, metadata)
    return info.value.message


def test_rows_by_input_name_stack_into_columns() -> None:
    instances = [
        {"pclass": "3", "sex": "male", "age": 22, "fare": 7.25, "embarked": "S"},
        {"pclass": 1, "sex": "female", "age": None, "fare": 71.28, "embarked": "C"},
    ]
    request, form = decode({"instances": instances}, titanic_metadata())
    assert form == PredictForm(row_format=True)
    inputs = validate_inputs(titanic_metadata(), request.inputs)
    assert inputs["fare"].shape == (2, 1) and inputs["fare"].dtype == np.float32
    assert inputs["pclass"].tolist() == [["3"], ["1"]]


def test_an_empty_signature_name_means_the_default() -> None:
    """What the model's own metadata answers (``"signature_name": ""``) is accepted back."""
    _, form = decode({"instances": [[1, 2]], "signature_name": ""})
    assert form.signature_name is None


def test_bare_rows_feed_a_single_input_model() -> None:
    request, form = decode({"instances": [[1, 2], [3, 4]], "signature_name": "predict_images"})
    assert form == PredictForm(row_format=True, signature_name="predict_images")
    assert validate_inputs(SINGLE, request.inputs)["pixels"].tolist() == [[1, 2], [3, 4]]


def test_columns_by_name_and_bare() -> None:
    request, form = decode({"inputs": {"pixels": [[1, 2]]}})
    assert not form.row_format and request.inputs["pixels"].shape == (1, 2)
    request, _ = decode({"inputs": [[1, 2], [3, 4]]})
    assert request.inputs["pixels"].shape == (2, 2)


def test_b64_values_become_bytes() -> None:
    request, _ = decode({"instances": [{"b64": "aGVsbG8="}, {"b64": "/w=="}]}, BLOB)
    assert request.inputs["blob"].tolist() == [b"hello", b"\xff"]
    request, _ = decode({"inputs": {"blob": [{"b64": "aGk="}]}}, BLOB)
    assert request.inputs["blob"].tolist() == [b"hi"]


@pytest.mark.parametrize(
    ("payload", "expected"),
    [
        (b"{not json", "the request body is not valid JSON: JSON is malformed"),
        (b"[1, 2]", "the request body must be a JSON object, got a list"),
        (
            {"instances": [[1, 2]], "inputs": [[1, 2]]},
            "either 'instances' (row format) or 'inputs'",
        ),
        ({"signature_name": "x"}, "either 'instances' (row format) or 'inputs'"),
        ({"instance": [[1, 2]]}, "unknown field(s) 'instance' in the predict request"),
        (
            {"instances": {"pixels": [1, 2]}},
            "'instances' must be a list of rows, got an object",
        ),
        (
            {"instances": [[1, 2]], "signature_name": 3},
            "'signature_name' must be a string, got a number",
        ),
        ({"instances": [[1, 2], [3]]}, "input 'pixels': nested lists must be rectangular"),
    ],
)
def test_malformed_predict_requests(payload: dict[str, Any] | bytes, expected: str) -> None:
    assert expected in refused(payload)


@pytest.mark.parametrize(
    ("payload", "expected"),
    [
        ({"instances": [{"b64": "%%%"}]}, "input 'blob' at [0]: invalid base64"),
        ({"inputs": {"blob": [{"b64": "aGk=", "x": 1}]}}, "input 'blob': expected a value at [0]"),
        ({"instances": [{"b64": 1}]}, "input 'blob': \"b64\" at [0] must be a string"),
    ],
)
def test_bad_base64_values(payload: dict[str, Any], expected: str) -> None:
    assert expected in refused(payload, BLOB)


def test_bare_values_need_a_single_input_model() -> None:
    message = refused({"instances": [1, 2]}, titanic_metadata())
    assert message.startswith("the model has 5 inputs ('fare', 'sex', 'embarked', 'pclass', 'age')")
    assert "'inputs' must give" in refused({"inputs": [1, 2]}, titanic_metadata())


def test_every_instance_has_the_same_form_and_inputs() -> None:
    metadata = titanic_metadata()
    message = refused({"instances": [{"fare": 1}, 2]}, metadata)
    assert message.startswith("instance 1 is not an object by input name like the others")
    message = refused({"instances": [{"fare": 1, "age": 2}, {"fare": 1}]}, metadata)
    assert message.startswith("instance 1 has inputs ['fare'] but instance 0 has ['age', 'fare']")


def test_unknown_input_names_are_left_to_validation() -> None:
    request, _ = decode({"inputs": {"pixel": [[1, 2]]}})
    with pytest.raises(BadRequest, match="unknown input 'pixel'; the model's inputs are 'pixels'"):
        validate_inputs(SINGLE, request.inputs)


def response(**outputs: np.ndarray) -> InferenceResponse:
    return InferenceResponse("m", "1", outputs)


def test_row_answers_are_bare_values_for_one_output_and_objects_for_several() -> None:
    scores = np.array([[0.1], [0.9]], dtype=np.float32)
    assert encode_predict(response(score=scores), PredictForm(True)) == {
        "predictions": [[0.1], [0.9]]
    }
    both = response(label=np.array([0, 1]), score=scores)
    assert encode_predict(both, PredictForm(True)) == {
        "predictions": [{"label": 0, "score": [0.1]}, {"label": 1, "score": [0.9]}]
    }


def test_column_answers_mirror_the_request() -> None:
    scores = np.array([0.25, 0.5], dtype=np.float32)
    assert encode_predict(response(score=scores), PredictForm(False)) == {"outputs": [0.25, 0.5]}
    both = response(label=np.array([0, 1]), score=scores)
    assert encode_predict(both, PredictForm(False)) == {
        "outputs": {"label": [0, 1], "score": [0.25, 0.5]}
    }


def test_binary_outputs_are_b64_when_named_bytes_or_not_text() -> None:
    texts = np.array(["a", b"b", b"\xff"], dtype=object)
    answered = encode_predict(response(text=texts, image_bytes=texts), PredictForm(False))
    assert answered["outputs"]["text"] == ["a", "b", {"b64": "/w=="}]
    assert answered["outputs"]["image_bytes"] == ["a", {"b64": "Yg=="}, {"b64": "/w=="}]


def test_outputs_without_a_common_batch_cannot_be_rows() -> None:
    odd = response(a=np.array([1, 2]), b=np.array([1, 2, 3]))
    with pytest.raises(InferenceServerError, match="no common batch dimension"):
        encode_predict(odd, PredictForm(True))


def test_model_status_in_tf_serving_shape() -> None:
    status = model_status(
        "titanic", [("1", "READY", None), ("2", "UNAVAILABLE", "bad file"), ("10", "LOADING", None)]
    )
    assert status == {
        "model_version_status": [
            {
                "version": "10",
                "state": "LOADING",
                "status": {"error_code": "OK", "error_message": ""},
            },
            {
                "version": "2",
                "state": "END",
                "status": {"error_code": "UNKNOWN", "error_message": "bad file"},
            },
            {
                "version": "1",
                "state": "AVAILABLE",
                "status": {"error_code": "OK", "error_message": ""},
            },
        ]
    }


def test_model_metadata_in_tf_serving_shape() -> None:
    described = model_metadata("digits", "3", SINGLE)
    assert described["model_spec"] == {"name": "digits", "signature_name": "", "version": "3"}
    signature = described["metadata"]["signature_def"]["signature_def"]["predict_images"]
    assert signature["method_name"] == "tensorflow/serving/predict"
    assert signature["inputs"]["pixels"] == {
        "dtype": "DT_FLOAT",
        "tensor_shape": {
            "dim": [{"size": "-1", "name": ""}, {"size": "2", "name": ""}],
            "unknown_rank": False,
        },
        "name": "pixels",
    }
    titanic = model_metadata("titanic", "1", titanic_metadata())
    inputs = titanic["metadata"]["signature_def"]["signature_def"]["serving_default"]["inputs"]
    assert inputs["sex"]["dtype"] == "DT_STRING"
    assert error_body("nope") == {"error": "nope"}


def test_no_rows_are_zero_rows_of_every_input_in_both_formats() -> None:
    # An empty list is zero rows of a [-1, 2] input, not one row of nothing ("got [0]").
    payloads: list[dict[str, Any]] = [{"inputs": {"pixels": []}}, {"inputs": []}, {"instances": []}]
    for payload in payloads:
        request, _ = decode(payload)
        assert validate_inputs(SINGLE, request.inputs)["pixels"].shape == (0, 2), payload
    request, form = decode({"instances": []}, titanic_metadata())
    inputs = validate_inputs(titanic_metadata(), request.inputs)
    assert {array.shape for array in inputs.values()} == {(0, 1)}
    nothing = InferenceResponse("m", "1", outputs={"survived": np.empty((0, 1), np.int64)})
    assert encode_predict(nothing, form) == {"predictions": []}

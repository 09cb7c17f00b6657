"""The simple eval API: column and single-instance forms, answered in kind; describe."""

from __future__ import annotations

import io
import json
from typing import Any

import numpy as np
import pytest
from PIL import Image

from runtime.codecs.simple import (
    EvalForm,
    decode_eval,
    decode_eval_image,
    describe,
    encode_eval,
    error_body,
)
from runtime.errors import BadRequest
from runtime.images import ImageConfig
from runtime.inference import InferenceResponse
from runtime.tensors import ModelMetadata, TensorSpec
from runtime.validation import validate_inputs
from tests.runtime.codecs import titanic_metadata

DIGITS = ModelMetadata(
    inputs=(TensorSpec("image", "FP32", (-1, 8, 8, 1)),),
    outputs=(TensorSpec("digit", "INT64", (-1,)), TensorSpec("probabilities", "FP32", (-1, 10))),
    platform="keras",
)

COLUMNS: dict[str, list[list[Any]]] = {
    "fare": [[7], [9]],
    "sex": [["male"], ["female"]],
    "embarked": [["Q"], ["S"]],
    "pclass": [["3"], ["2"]],
    "age": [[27], [38]],
}
INSTANCE = {"fare": 7, "sex": "male", "embarked": "Q", "pclass": "3", "age": 27}


def decode(payload: Any, metadata: ModelMetadata | None = None) -> Any:
    body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    return decode_eval(body, metadata or titanic_metadata())


def refused(payload: Any, metadata: ModelMetadata | None = None) -> str:
    with pytest.raises(BadRequest) as info:
        decode(payload, metadata)
    return info.value.message


def test_column_form() -> None:
    request, form = decode(COLUMNS)
    assert form == EvalForm(single_instance=False)
    inputs = validate_inputs(titanic_metadata(), request.inputs)
    assert inputs["fare"].tolist() == [[7.0], [9.0]] and inputs["sex"].shape == (2, 1)


def test_flat_lists_are_columns_too() -> None:
    request, form = decode({name: [row[0] for row in rows] for name, rows in COLUMNS.items()})
    assert not form.single_instance
    assert validate_inputs(titanic_metadata(), request.inputs)["age"].shape == (2, 1)


def test_single_instance_form_is_one_row() -> None:
    request, form = decode(INSTANCE)
    assert form == EvalForm(single_instance=True)
    inputs = validate_inputs(titanic_metadata(), request.inputs)
    assert {name: array.shape for name, array in inputs.items()} == dict.fromkeys(INSTANCE, (1, 1))
    assert inputs["embarked"].tolist() == [["Q"]]


def test_mixing_forms_is_refused() -> None:
    message = refused({**INSTANCE, "fare": [[7]]})
    assert message.startswith("inputs mix the two forms: 'sex' is a single instance but 'fare'")


@pytest.mark.parametrize(
    ("payload", "expected"),
    [
        (b"", "the request body is empty"),
        (
            b'{"fare": NaN}',
            "the request body is not valid JSON: JSON is malformed: invalid character (byte 9)",
        ),
        (b'[{"fare": 7}]', "the request body must be a JSON object, got a list"),
        ({**INSTANCE, "fare": "abc"}, "input 'fare': expected FP32 numbers, got the string 'abc'"),
        ({**INSTANCE, "sex": None}, "input 'sex': expected BYTES (strings), got null at [0, 0]"),
        ({**INSTANCE, "embarked": "X"}, "input 'embarked': expected one of 'C', 'Q', 'S'"),
        ({**INSTANCE, "fair": 7}, "unknown input 'fair'"),
        # An object is not a column: the message names it, not a mix of the two forms.
        (
            {**INSTANCE, "fare": {"value": 7}},
            "input 'fare': expected a value or a list of values, got an object "
            '(binary values are written {"b64": "..."})',
        ),
        (
            {**COLUMNS, "fare": {"value": 7}},
            "input 'fare': expected a value or a list of values, got an object",
        ),
    ],
)
def test_bad_eval_bodies(payload: Any, expected: str) -> None:
    with pytest.raises(BadRequest) as info:
        request, _ = decode(payload)
        validate_inputs(titanic_metadata(), request.inputs)
    assert expected in info.value.message


def test_nullable_inputs_take_null() -> None:
    request, _ = decode({**INSTANCE, "age": None})
    assert np.isnan(validate_inputs(titanic_metadata(), request.inputs)["age"][0, 0])


def test_image_shaped_inputs_tell_the_forms_apart_by_depth() -> None:
    one = [[[0.0]] * 8] * 8
    request, form = decode({"image": one}, DIGITS)
    assert form.single_instance and request.inputs["image"].shape == (1, 8, 8, 1)
    request, form = decode({"image": [one, one]}, DIGITS)
    assert not form.single_instance and request.inputs["image"].shape == (2, 8, 8, 1)


def test_instance_answers_are_scalars_and_rows() -> None:
    response = InferenceResponse(
        "titanic",
        "2",
        {"label": np.array([1]), "probabilities": np.array([[0.25, 0.75]], dtype=np.float32)},
        id="r1",
    )
    assert encode_eval(response, EvalForm(single_instance=True)) == {
        "model": "titanic",
        "version": "2",
        "id": "r1",
        "outputs": {"label": 1, "probabilities": [0.25, 0.75]},
    }


def test_column_answers_keep_the_batch() -> None:
    response = InferenceResponse(
        "titanic", "2", {"score": np.array([[0.1], [0.9]], dtype=np.float32)}
    )
    assert encode_eval(response, EvalForm(single_instance=False)) == {
        "model": "titanic",
        "version": "2",
        "outputs": {"score": [[0.1], [0.9]]},
    }


def test_describe_lists_the_contract_and_examples_that_work() -> None:
    metadata = titanic_metadata()
    described = describe("titanic", "2", metadata, labels={"stable": 2})
    assert described["model"] == "titanic" and described["version"] == "2"
    assert described["labels"] == {"stable": 2}
    assert described["inputs"][1] == {
        "name": "sex",
        "datatype": "BYTES",
        "shape": [-1, 1],
        "nullable": False,
        "allowed_values": ["female", "male"],
    }
    assert described["inputs"][2]["nullable"] is True
    examples = described["examples"]
    assert examples["instance"] == {
        "pclass": "1", "sex": "female", "age": 0.0, "fare": 0.0, "embarked": "C"
    }  # fmt: skip
    assert examples["columns"]["sex"] == [["female"], ["male"]]
    for form, example in examples.items():
        request, decoded_form = decode(example)
        assert decoded_form.single_instance == (form == "instance")
        validate_inputs(metadata, request.inputs)


def test_describe_examples_for_image_models() -> None:
    config = ImageConfig(width=8, height=8, input="image")
    described = describe("digits", "1", DIGITS, image=config)
    assert described["image"] == {
        "input": "image",
        "content_types": ["image/png", "image/jpeg"],
        "width": 8,
        "height": 8,
        "color_mode": "grayscale",
    }
    assert "labels" not in described
    for example in described["examples"].values():
        request, _ = decode(example, DIGITS)
        validate_inputs(DIGITS, request.inputs)


def test_image_bodies_are_one_instance() -> None:
    buffer = io.BytesIO()
    Image.new("L", (32, 32), 255).save(buffer, format="PNG")
    config = ImageConfig(width=8, height=8, scale=16 / 255)
    request, form = decode_eval_image(buffer.getvalue(), "image/png", config, DIGITS)
    assert form.single_instance
    image = validate_inputs(DIGITS, request.inputs)["image"]
    assert image.shape == (1, 8, 8, 1) and np.allclose(image, 16.0)


def test_b64_values_and_binary_outputs() -> None:
    metadata = ModelMetadata(
        inputs=(TensorSpec("text", "BYTES", (-1, 1)),), outputs=(), platform="pipeline"
    )
    request, _ = decode({"text": {"b64": "aGk="}}, metadata)
    assert validate_inputs(metadata, request.inputs)["text"].tolist() == [[b"hi"]]
    response = InferenceResponse("t", "1", {"tokens": np.array([[b"\xff", b"ok"]], dtype=object)})
    assert encode_eval(response, EvalForm(True))["outputs"] == {"tokens": [{"b64": "/w=="}, "ok"]}
    assert error_body("x") == {"error": "x"}


@pytest.mark.parametrize(
    ("shape", "rows"),
    [((-1, 4), (0, 4)), ((-1, 8, 8, 1), (0, 8, 8, 1)), ((-1, 1), (0, 1))],
)
def test_an_empty_list_is_a_column_of_zero_rows(
    shape: tuple[int, ...], rows: tuple[int, ...]
) -> None:
    # No instance of a [-1, 4] input is empty: [] used to be read as one, "got [1, 0]".
    metadata = ModelMetadata(
        inputs=(TensorSpec("features", "FP32", shape), TensorSpec("extra", "FP32", (-1, 1))),
        outputs=(TensorSpec("score", "FP32", (-1, 1)),),
        platform="onnx",
    )
    request, form = decode({"features": [], "extra": []}, metadata)
    assert form == EvalForm(single_instance=False)
    inputs = validate_inputs(metadata, request.inputs)
    assert inputs["features"].shape == rows and inputs["extra"].shape == (0, 1)
    nothing = InferenceResponse("m", "1", outputs={"score": np.empty((0, 1), np.float32)})
    assert encode_eval(nothing, form)["outputs"] == {"score": []}


def test_an_empty_list_is_still_an_instance_of_an_input_of_any_length() -> None:
    tokens = ModelMetadata(
        inputs=(TensorSpec("tokens", "INT64", (-1, -1)),), outputs=(), platform="onnx"
    )
    request, form = decode({"tokens": []}, tokens)
    assert form.single_instance and request.inputs["tokens"].shape == (1, 0)

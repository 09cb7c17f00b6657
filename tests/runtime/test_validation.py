"""validate_inputs / select_outputs: what a model accepts, and the words used when it does not."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest

from runtime.errors import MAX_MESSAGE_CHARS, BadRequest, InferenceServerError
from runtime.tensors import ModelMetadata, TensorSpec
from runtime.validation import (
    check_requested_outputs,
    coerce,
    select_outputs,
    validate_inputs,
)
from tests.runtime.codecs import titanic_metadata


def column(*values: Any) -> np.ndarray:
    """An ``object`` column of raw JSON values, as the JSON codecs hand them over."""
    array = np.empty((len(values), 1), dtype=object)
    array[:, 0] = values
    return array


def passengers(**overrides: np.ndarray) -> dict[str, np.ndarray]:
    inputs = {
        "pclass": column("3", "1"),
        "sex": column("male", "female"),
        "age": column(22, 38.5),
        "fare": column(7.25, 71.2833),
        "embarked": column("S", "C"),
    }
    inputs.update(overrides)
    return inputs


def one(datatype: str, **spec: Any) -> ModelMetadata:
    """A model with a single ``[-1, 1]`` input ``x`` of ``datatype``."""
    return ModelMetadata(
        inputs=(TensorSpec("x", datatype, (-1, 1), **spec),), outputs=(), platform="test"
    )


def refused(metadata: ModelMetadata, inputs: dict[str, np.ndarray]) -> str:
    with pytest.raises(BadRequest) as info:
        validate_inputs(metadata, inputs)
    return info.value.message


def test_valid_columns_are_typed_as_the_spec_says() -> None:
    inputs = validate_inputs(titanic_metadata(), passengers())
    assert list(inputs) == ["fare", "sex", "embarked", "pclass", "age"]
    assert inputs["fare"].dtype == np.float32
    assert inputs["fare"].shape == (2, 1)
    assert inputs["age"].tolist() == [[22.0], [38.5]]
    assert inputs["sex"].dtype == object
    assert inputs["sex"].tolist() == [["male"], ["female"]]


def test_a_flat_list_for_a_column_input_is_taken_as_the_column() -> None:
    flat = np.array([7.25, 8.0], dtype=object)
    inputs = validate_inputs(titanic_metadata(), passengers(fare=flat))
    assert inputs["fare"].shape == (2, 1)


def test_unknown_input_lists_the_expected_names() -> None:
    message = refused(titanic_metadata(), passengers(fair=column(1, 2)))
    assert message == (
        "unknown input 'fair'; the model's inputs are 'fare', 'sex', 'embarked', 'pclass', 'age'"
    )


def test_a_message_quoting_the_client_is_bounded() -> None:
    """200,000 made-up names answered 2 MB of error listing each."""
    made_up = {f"k{index}": column(1) for index in range(200_000)}
    message = refused(titanic_metadata(), passengers(**made_up))
    assert message.startswith("unknown inputs 'k0', 'k1'")
    assert len(message) < MAX_MESSAGE_CHARS + 40
    assert message.endswith(" more characters)")


def test_missing_inputs_are_named() -> None:
    inputs = passengers()
    del inputs["age"], inputs["fare"]
    assert refused(titanic_metadata(), inputs).startswith("missing inputs 'fare', 'age';")


def test_wrong_shape_says_expected_and_got() -> None:
    wide = np.array([[1, 2, 3], [4, 5, 6]], dtype=object)
    message = refused(titanic_metadata(), passengers(fare=wide))
    assert message == "input 'fare': expected shape [?, 1], got [2, 3]"


def test_a_string_where_a_number_is_expected_names_input_and_position() -> None:
    message = refused(titanic_metadata(), passengers(fare=column(7, "abc")))
    assert message == "input 'fare': expected FP32 numbers, got the string 'abc' at [1, 0]"


def test_numeric_strings_are_not_parsed() -> None:
    assert "got the string '7' at [0, 0]" in refused(one("FP32"), {"x": column("7")})


def test_a_boolean_is_not_a_number() -> None:
    message = refused(one("FP64"), {"x": column(1.0, True)})
    assert message == "input 'x': expected FP64 numbers, got the boolean true at [1, 0]"


def test_null_is_refused_unless_the_input_is_nullable() -> None:
    message = refused(one("FP32"), {"x": column(None, 1.0)})
    assert message == (
        "input 'x': expected FP32 numbers, got null at [0, 0] "
        "(this input accepts no missing values)"
    )
    age = validate_inputs(titanic_metadata(), passengers(age=column(None, 30)))["age"]
    assert math.isnan(age[0, 0]) and age[1, 0] == 30


def test_nan_is_refused_unless_nullable() -> None:
    values = np.array([[1.0], [np.nan]], dtype=np.float32)
    assert "got NaN at [1, 0]" in refused(one("FP32"), {"x": values})
    kept = validate_inputs(one("FP32", nullable=True), {"x": values})["x"]
    assert np.isnan(kept[1, 0])


@pytest.mark.parametrize("nullable", [False, True])
def test_infinity_is_never_a_value(nullable: bool) -> None:
    values = np.array([[-np.inf]], dtype=np.float64)
    message = refused(one("FP32", nullable=nullable), {"x": values})
    assert message == "input 'x': expected FP32 numbers, got -Infinity at [0, 0]"


def test_integer_inputs_have_no_missing_value() -> None:
    message = refused(one("INT64", nullable=True), {"x": column(None)})
    assert (
        message
        == "input 'x': expected INT64 integers, got null at [0, 0] (INT64 has no missing value)"
    )


@pytest.mark.parametrize(
    ("datatype", "value", "expected"),
    [
        ("INT8", 300, "got 300 at [0, 0] (out of range for INT8: -128 to 127)"),
        ("UINT8", -1, "got -1 at [0, 0] (out of range for UINT8: 0 to 255)"),
        ("INT64", 2**63, f"got {2**63} at [0, 0] (out of range for INT64"),
        ("UINT64", 2**64, f"got {2**64} at [0, 0] (out of range for UINT64"),
        ("INT32", 3.5, "got the fraction 3.5 at [0, 0]"),
        ("FP16", 70000, "got 70000 at [0, 0] (out of range for FP16: magnitude at most 65504)"),
        ("FP32", 1e39, "got 1e+39 at [0, 0] (out of range for FP32"),
        ("FP64", 10**400, "(out of range for FP64"),
    ],
)
def test_out_of_range_numbers_are_refused(datatype: str, value: Any, expected: str) -> None:
    message = refused(one(datatype), {"x": column(value)})
    assert message.startswith(f"input 'x': expected {datatype} ")
    assert expected in message


def test_integral_floats_and_the_extremes_of_a_range_are_accepted() -> None:
    assert validate_inputs(one("INT32"), {"x": column(3.0, -7)})["x"].tolist() == [[3], [-7]]
    biggest = validate_inputs(one("UINT64"), {"x": column(2**64 - 1)})["x"]
    assert biggest.dtype == np.uint64 and int(biggest[0, 0]) == 2**64 - 1


@pytest.mark.parametrize(
    ("array", "datatype", "expected"),
    [
        (np.array([[1], [2]], dtype=np.int64), "FP32", [[1.0], [2.0]]),
        (np.array([[1.0], [2.0]], dtype=np.float32), "INT16", [[1], [2]]),
        (np.array([[1], [0]], dtype=np.int8), "BOOL", [[True], [False]]),
        (np.array([[0.5]], dtype=np.float64), "FP16", [[0.5]]),
        (np.array([[7]], dtype=np.uint8), "UINT64", [[7]]),
    ],
)
def test_typed_arrays_convert_when_values_survive(
    array: np.ndarray, datatype: str, expected: list[Any]
) -> None:
    out = validate_inputs(one(datatype), {"x": array})["x"]
    assert out.dtype == np.dtype(
        bool if datatype == "BOOL" else datatype.replace("FP", "float").lower()
    )
    assert out.tolist() == expected


@pytest.mark.parametrize(
    ("array", "datatype", "expected"),
    [
        (np.array([[2**63]], dtype=np.uint64), "INT64", "out of range for INT64"),
        (np.array([[1.5]], dtype=np.float32), "INT64", "got the fraction 1.5 at [0, 0]"),
        (np.array([[1e6]], dtype=np.float32), "FP16", "out of range for FP16"),
        (np.array([[True]]), "FP32", "got the boolean true at [0, 0]"),
        (np.array([["abc"]]), "INT32", "got the string 'abc' at [0, 0]"),
        (np.array([[2]], dtype=np.int32), "BOOL", "got 2 at [0, 0] (out of range for BOOL"),
        (np.array([[np.nan]]), "INT32", "got NaN at [0, 0] (INT32 has no missing value)"),
    ],
)
def test_typed_arrays_that_do_not_survive_are_refused(
    array: np.ndarray, datatype: str, expected: str
) -> None:
    assert expected in refused(one(datatype), {"x": array})


def test_bool_inputs_take_true_false_and_zero_one() -> None:
    out = validate_inputs(one("BOOL"), {"x": column(True, False, 1, 0)})["x"]
    assert out.dtype == np.bool_ and out.ravel().tolist() == [True, False, True, False]
    assert "got the string 'yes' at [0, 0]" in refused(one("BOOL"), {"x": column("yes")})


def test_numbers_for_a_bytes_input_become_their_decimal_text() -> None:
    inputs = validate_inputs(titanic_metadata(), passengers(pclass=column(3, 1.0)))
    assert inputs["pclass"].tolist() == [["3"], ["1"]]
    assert "got the boolean false" in refused(one("BYTES"), {"x": column(False)})


def test_categoricals_must_be_allowed_values_and_the_message_lists_them() -> None:
    message = refused(titanic_metadata(), passengers(embarked=column("S", "X")))
    assert message == "input 'embarked': expected one of 'C', 'Q', 'S'; got 'X' at [1, 0]"
    number = refused(titanic_metadata(), passengers(pclass=column(3, 4)))
    assert number == "input 'pclass': expected one of '1', '2', '3'; got '4' at [1, 0]"
    binary = validate_inputs(titanic_metadata(), passengers(embarked=column(b"Q", "S")))
    assert binary["embarked"][0, 0] == b"Q"


def test_a_long_allowed_list_is_shortened_in_the_message() -> None:
    words = tuple(f"w{i}" for i in range(30))
    message = refused(one("BYTES", allowed_values=words), {"x": column("nope")})
    assert "'w19', ... (10 more); got 'nope'" in message


def test_null_for_bytes_is_none_only_when_nullable() -> None:
    assert "got null at [0, 0]" in refused(one("BYTES"), {"x": column(None)})
    kept = validate_inputs(one("BYTES", nullable=True, allowed_values=("a",)), {"x": column(None)})
    assert kept["x"][0, 0] is None


def test_batch_sizes_must_agree() -> None:
    message = refused(titanic_metadata(), passengers(fare=column(1.0, 2.0, 3.0)))
    assert message.startswith("inputs disagree on the batch size (dimension 0):")
    assert "'fare' has 3" in message and "'sex' has 2" in message


@pytest.mark.parametrize("weird", [[1, 2], {"a": 1}, object()])
def test_odd_python_objects_are_bad_requests_not_crashes(weird: Any) -> None:
    for datatype in ("FP32", "INT64", "BOOL", "BYTES"):
        with pytest.raises(BadRequest, match=r"input 'x': expected .* at \[0, 0\]"):
            validate_inputs(one(datatype), {"x": column(weird)})


def test_coerce_reports_positions_in_the_clients_shape() -> None:
    data = np.array([[[1, 2], [3, "x"]]], dtype=object)
    with pytest.raises(BadRequest, match=r"at \[0, 1, 1\]$"):
        coerce("img", data, "FP32")


def test_select_outputs_keeps_everything_by_default_and_follows_the_request() -> None:
    metadata = titanic_metadata()
    outputs = {"survived": np.array([[1]]), "probability": np.array([[0.8]])}
    assert list(select_outputs(outputs, None, metadata)) == ["survived", "probability"]
    assert list(select_outputs(outputs, ["probability"], metadata)) == ["probability"]
    with pytest.raises(BadRequest) as info:
        select_outputs(outputs, ["score"], metadata)
    assert info.value.message == (
        "unknown output 'score' requested; the model's outputs are 'survived', 'probability'"
    )


def test_a_declared_output_the_backend_did_not_produce_is_a_server_error() -> None:
    with pytest.raises(InferenceServerError) as info:
        select_outputs({"survived": np.array([[1]])}, ["probability"], titanic_metadata())
    assert info.value.status_code == 500


def test_unknown_requested_outputs_can_be_refused_before_the_model_runs() -> None:
    check_requested_outputs(titanic_metadata(), None)
    check_requested_outputs(titanic_metadata(), ["survived"])
    with pytest.raises(BadRequest, match="unknown output 'score' requested; the model's outputs"):
        check_requested_outputs(titanic_metadata(), ["survived", "score"])

"""The strict JSON helpers every dialect shares."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from runtime.codecs.json import (
    array_to_json,
    decode_json,
    decode_json_object,
    flat_json_values,
    nested_to_array,
)
from runtime.errors import BadRequest


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (
            b'{"fare": NaN}',
            "the request body is not valid JSON: JSON is malformed: invalid character (byte 9)",
        ),
        (b'{"fare": Infinity}', "invalid character (byte 9)"),
        (b'{"fare": 1e999}', "Number out of range"),
        (b'{"fare": [1, 2}', "JSON is malformed"),
        (b'{"fare": 1} trailing', "trailing characters"),
        (b"\xff\xfe", "not valid JSON"),
        (b"", "the request body is empty; expected JSON"),
        (b"   ", "the request body is empty; expected JSON"),
    ],
)
def test_malformed_json_is_a_bad_request_with_the_position(body: bytes, expected: str) -> None:
    with pytest.raises(BadRequest) as info:
        decode_json(body)
    assert expected in info.value.message


@pytest.mark.parametrize(
    ("body", "kind"),
    [(b"[1, 2]", "a list"), (b'"x"', "a string"), (b"3", "a number"), (b"null", "null")],
)
def test_a_body_that_must_be_an_object(body: bytes, kind: str) -> None:
    with pytest.raises(BadRequest) as info:
        decode_json_object(body)
    assert info.value.message == f"the request body must be a JSON object, got {kind}"


def test_nested_lists_become_an_object_array_of_the_raw_values() -> None:
    array = nested_to_array([[1, "a"], [2.5, None]], "x")
    assert array.dtype == object and array.shape == (2, 2)
    assert array.tolist() == [[1, "a"], [2.5, None]]
    assert nested_to_array(7, "x").shape == ()
    assert nested_to_array([], "x").shape == (0,)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ([[1, 2], [3]], "expected a list of 2 at [1], got 1 items"),
        ([[1, 2], 3], "expected a list of 2 at [1], got a number"),
        ([1, [2]], "expected a value at [1], got a list"),
        ([[[1]], [[2, 3]]], "expected a list of 1 at [1, 0], got 2 items"),
    ],
)
def test_ragged_lists_are_refused_with_the_position(value: Any, expected: str) -> None:
    with pytest.raises(BadRequest) as info:
        nested_to_array(value, "x")
    assert info.value.message == f"input 'x': nested lists must be rectangular; {expected}"


def test_b64_objects_are_bytes_where_allowed() -> None:
    array = nested_to_array([{"b64": "aGk="}, {"b64": "aGk"}, {"b64": "_-8"}], "x", allow_b64=True)
    assert array.tolist() == [b"hi", b"hi", b"\xff\xef"]
    with pytest.raises(BadRequest, match=r"input 'x': expected a value at \[1\], got an object$"):
        nested_to_array([1, {"b64": "aGk="}], "x")


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ({"b64": "not base64!"}, "input 'x': invalid base64"),
        ({"b64": 12}, "input 'x': \"b64\" must be a string, got a number"),
        (
            {"b65": "aGk="},
            'expected a value, got an object (binary values are written {"b64": "..."})',
        ),
    ],
)
def test_bad_b64_objects_are_bad_requests(value: Any, expected: str) -> None:
    with pytest.raises(BadRequest) as info:
        nested_to_array(value, "x", allow_b64=True)
    assert expected in info.value.message


def test_float32_values_are_written_with_their_shortest_decimal() -> None:
    values = np.array([0.1, 1 / 3, 3.4e38], dtype=np.float32)
    assert flat_json_values(values) == [0.1, 0.33333334, 3.4e38]
    assert np.array_equal(np.array(flat_json_values(values), dtype=np.float32), values)
    assert flat_json_values(np.array([0.1], dtype=np.float16)) == [0.1]


def test_values_json_cannot_carry_become_null() -> None:
    values = np.array([[1.0, np.nan], [np.inf, -np.inf]], dtype=np.float32)
    assert array_to_json(values) == [[1.0, None], [None, None]]


def test_bytes_are_text_when_utf8_else_b64() -> None:
    array = np.array([b"caf\xc3\xa9", b"\xff", "text", None], dtype=object)
    assert array_to_json(array) == ["café", {"b64": "/w=="}, "text", None]
    assert array_to_json(np.array(3, dtype=np.int64)) == 3


JSON = b'{"fare": 7}'


@pytest.mark.parametrize(
    ("body", "images", "hint"),
    [
        (b"\xef\xbb\xbf" + JSON, False, "it starts with a UTF-8 byte order mark"),
        (JSON.decode().encode("utf-16"), False, "it is UTF-16 text; JSON bodies must be UTF-8"),
        (JSON.decode().encode("utf-16-le"), False, "it is UTF-16 text"),
        (JSON.decode().encode("utf-16-be"), False, "it is UTF-16 text"),
        (
            b"\x89PNG\r\n\x1a\n\x00\x00",
            True,
            "it is a PNG image: send it with Content-Type: image/png",
        ),
        (
            b"\xff\xd8\xff\xe0\x00",
            True,
            "it is a JPEG image: send it with Content-Type: image/jpeg",
        ),
        (
            b"\x89PNG\r\n\x1a\n\x00\x00",
            False,
            "it is a PNG image, and this endpoint takes JSON only",
        ),
    ],
    ids=["bom", "utf16", "utf16le", "utf16be", "png", "jpeg", "png-json-only"],
)
def test_bodies_sent_in_the_wrong_encoding_say_so(body: bytes, images: bool, hint: str) -> None:
    # msgspec alone says "invalid character (byte 0)", which names no cause.
    with pytest.raises(BadRequest) as info:
        decode_json(body, images=images)
    assert info.value.message.startswith("the request body is not valid JSON: ")
    assert f"; {hint}" in info.value.message


@pytest.mark.parametrize("body", [b'{"fare": [1, 2}', b'\x00{"fare": 7}', b"\x00a"])
def test_plain_malformed_json_gets_no_hint(body: bytes) -> None:
    # A stray NUL before JSON was called UTF-16.
    with pytest.raises(BadRequest) as info:
        decode_json(body)
    assert ";" not in info.value.message

"""Open Inference Protocol tensors in Triton's binary tensor data extension are recorded.

tritonclient sends inputs binary by default, and asks for binary outputs when it names
none: such tensors were left out of the log (a request of binary inputs had none, and drift
counted its features as missing). Bodies are built by hand here, as the wire format says:
the JSON, then each binary tensor's bytes in order, little-endian, a ``BYTES`` element a
4-byte length and its bytes.
"""

from __future__ import annotations

import json
import struct
from typing import Any

import numpy as np
import pytest

from gateway.exchange import BINARY, request_rows, response_rows
from monitoring.binary_tensors import BinaryDataError, decode_chunk

HEADER = "inference-header-content-length"

SAMPLES: dict[str, np.ndarray] = {
    "BOOL": np.array([[True, False], [False, True]]),
    "UINT8": np.array([[0, 7], [128, 255]], dtype=np.uint8),
    "UINT16": np.array([[0, 7], [300, 65535]], dtype=np.uint16),
    "UINT32": np.array([[0, 7], [70000, 2**32 - 1]], dtype=np.uint32),
    "UINT64": np.array([[0, 7], [2**40, 2**63 - 1]], dtype=np.uint64),
    "INT8": np.array([[-128, 0], [1, 127]], dtype=np.int8),
    "INT16": np.array([[-32768, 0], [1, 32767]], dtype=np.int16),
    "INT32": np.array([[-(2**31), 0], [1, 2**31 - 1]], dtype=np.int32),
    "INT64": np.array([[-(2**63), 0], [1, 2**63 - 1]], dtype=np.int64),
    "FP16": np.array([[0.5, -2.5], [0.1, 65504]], dtype=np.float16),
    "FP32": np.array([[7.25, -2.5], [0.1, 3.4e38]], dtype=np.float32),
    "FP64": np.array([[7.25, -2.5], [0.1, 1e308]], dtype=np.float64),
    "BYTES": np.array([[b"male", "café".encode()], [b"", b"Q"]], dtype=object),
}


def wire(array: np.ndarray, datatype: str) -> bytes:
    """A tensor's binary data, as tritonclient writes it."""
    if datatype == "BYTES":
        return b"".join(struct.pack("<I", len(item)) + item for item in array.ravel().tolist())
    return np.ascontiguousarray(array, dtype=array.dtype.newbyteorder("<")).tobytes()


def binary_entry(name: str, array: np.ndarray, datatype: str) -> tuple[dict[str, Any], bytes]:
    data = wire(array, datatype)
    entry = {"name": name, "shape": list(array.shape), "datatype": datatype}
    return {**entry, "parameters": {"binary_data_size": len(data)}}, data


def as_written(array: np.ndarray) -> np.ndarray:
    """``array`` as the runtime's JSON answers write it: FP16 and FP32 as their shortest
    decimals (numpy's repr: ``0.1``, not ``0.10000000149011612``)."""
    if array.dtype.kind == "f" and array.dtype.itemsize <= 4:
        return array.astype(str).astype(np.float64)
    return array


def json_entry(name: str, array: np.ndarray, datatype: str) -> dict[str, Any]:
    written = as_written(array).ravel().tolist()
    values = [v.decode() if isinstance(v, bytes) else v for v in written]
    return {"name": name, "shape": list(array.shape), "datatype": datatype, "data": values}


def body_of(
    key: str, tensors: list[dict[str, Any] | tuple[dict[str, Any], bytes]]
) -> tuple[bytes, dict[str, str]]:
    """The body and headers of ``{key: tensors}``: a tuple is a binary tensor's entry and
    its bytes, a dict a JSON one."""
    entries = [t[0] if isinstance(t, tuple) else t for t in tensors]
    head = json.dumps({key: entries}).encode()
    tail = b"".join(t[1] for t in tensors if isinstance(t, tuple))
    return head + tail, {HEADER: str(len(head))}


def request_of(*tensors: dict[str, Any] | tuple[dict[str, Any], bytes]) -> Any:
    body, headers = body_of("inputs", list(tensors))
    return request_rows("v2", body, "application/octet-stream", headers)


def answer_of(*tensors: dict[str, Any] | tuple[dict[str, Any], bytes]) -> Any:
    body, headers = body_of("outputs", list(tensors))
    return response_rows("v2", body, headers, False)


def texts(rows: list[Any]) -> list[Any]:
    return [[v.decode() if isinstance(v, bytes) else v for v in row] for row in rows]


def plain_types(rows: list[dict[str, Any]]) -> set[type]:
    def leaves(value: Any) -> list[Any]:
        return [x for v in value for x in leaves(v)] if isinstance(value, list) else [value]

    return {type(leaf) for row in rows for value in row.values() for leaf in leaves(value)}


@pytest.mark.parametrize("datatype", list(SAMPLES))
def test_every_datatype_is_recorded_as_its_json_data_is(datatype: str) -> None:
    sample = SAMPLES[datatype]
    rows, single, note = request_of(binary_entry("x", sample, datatype))
    assert (rows, single, note) == request_of(json_entry("x", sample, datatype))
    assert (rows, note) == ([{"x": values} for values in texts(as_written(sample).tolist())], None)
    # Plain Python values: numpy scalars would compare equal here and break elsewhere.
    assert plain_types(rows) <= {bool, int, float, str}


@pytest.mark.parametrize("datatype", list(SAMPLES))
def test_every_datatype_of_a_binary_answer_is_recorded(datatype: str) -> None:
    sample = SAMPLES[datatype]
    rows, error, note = answer_of(binary_entry("y", sample, datatype))
    assert (rows, error, note) == answer_of(json_entry("y", sample, datatype))
    assert len(rows) == 2 and plain_types(rows) <= {bool, int, float, str}


def test_values_are_those_sent() -> None:
    """FP16 and FP32 are the shortest decimals of the values sent, as the runtime's JSON
    answers write them (where ``tolist()`` gives FP32 0.1 as 0.10000000149011612);
    integers and bools are Python's own."""
    rows, _, _ = request_of(
        binary_entry("f16", np.array([[0.1], [2.5]], dtype=np.float16), "FP16"),
        binary_entry("f32", np.array([[0.1], [7.25]], dtype=np.float32), "FP32"),
        binary_entry("u64", np.array([[2**64 - 1], [0]], dtype=np.uint64), "UINT64"),
        binary_entry("b", np.array([[True], [False]]), "BOOL"),
    )
    assert rows == [
        {"f16": 0.1, "f32": 0.1, "u64": 2**64 - 1, "b": True},
        {"f16": 2.5, "f32": 7.25, "u64": 0, "b": False},
    ]
    assert type(rows[0]["b"]) is bool


def test_rows_are_split_as_for_json_data() -> None:
    """A row of one element is a scalar, of a 1-D tensor a value, of a wider one a nested
    list: an image batch ``[N, h, w, c]`` is N rows of ``[h][w][c]`` lists."""
    images = np.arange(2 * 2 * 3 * 3, dtype=np.uint8).reshape(2, 2, 3, 3)
    rows, _, _ = request_of(
        binary_entry("image", images, "UINT8"),
        binary_entry("label", np.array([4, 5], dtype=np.int64), "INT64"),
        binary_entry("fare", np.array([[7.25], [9.5]], dtype=np.float32), "FP32"),
    )
    assert rows == [
        {"image": images[0].tolist(), "label": 4, "fare": 7.25},
        {"image": images[1].tolist(), "label": 5, "fare": 9.5},
    ]


def test_json_and_binary_tensors_mix_in_one_body() -> None:
    """Only the binary tensors have chunks, in their order: a JSON tensor between two binary
    ones claims none (a partly binary request lacked the binary columns, silently)."""
    rows, _, note = request_of(
        binary_entry("fare", np.array([[7.25], [9.5]], dtype=np.float32), "FP32"),
        json_entry("pclass", np.array([["3"], ["1"]], dtype=object), "BYTES"),
        binary_entry("sex", np.array([[b"male"], [b"female"]], dtype=object), "BYTES"),
        json_entry("age", np.array([[22.0], [38.0]]), "FP32"),
    )
    assert note is None
    assert rows == [
        {"fare": 7.25, "pclass": "3", "sex": "male", "age": 22.0},
        {"fare": 9.5, "pclass": "1", "sex": "female", "age": 38.0},
    ]
    outputs, error, answer_note = answer_of(
        json_entry("survived", np.array([[0], [1]]), "INT64"),
        binary_entry("probability", np.array([[0.25], [0.75]], dtype=np.float32), "FP32"),
    )
    assert (error, answer_note) == (None, None)
    assert outputs == [{"survived": 0, "probability": 0.25}, {"survived": 1, "probability": 0.75}]


def test_bytes_are_text_and_bytes_that_are_not_utf8_get_replacement_characters() -> None:
    """As the runtime's JSON answers carry them: the column stays text."""
    sex = np.array([["café".encode()], [b"\xffm\xfe"]], dtype=object)
    rows, _, note = request_of(binary_entry("sex", sex, "BYTES"))
    assert note is None
    assert rows == [{"sex": "café"}, {"sex": "\ufffdm\ufffd"}]


def test_nan_and_infinities_are_null_as_in_json() -> None:
    """JSON has neither: a JSON body carries a missing value as null, and the runtime's
    JSON answers write NaN and infinities as null; drift counts null as missing."""
    for datatype, dtype in (("FP16", np.float16), ("FP32", np.float32), ("FP64", np.float64)):
        values = np.array([[np.nan], [np.inf], [-np.inf], [1.5]], dtype=dtype)
        rows, _, note = request_of(binary_entry("fare", values, datatype))
        assert (rows, note) == (
            [{"fare": None}, {"fare": None}, {"fare": None}, {"fare": 1.5}],
            None,
        )
        outputs, _, _ = answer_of(binary_entry("p", values, datatype))
        assert outputs == [{"p": None}, {"p": None}, {"p": None}, {"p": 1.5}]


def test_a_request_of_only_binary_tensors_has_its_values_not_a_note() -> None:
    """It had no rows and the note 'binary tensor data is not recorded'."""
    rows, _, note = request_of(binary_entry("x", np.ones((1, 4), dtype=np.float32), "FP32"))
    assert (rows, note) == ([{"x": [1.0, 1.0, 1.0, 1.0]}], None)


def test_a_batch_of_no_rows_is_still_no_rows() -> None:
    rows, _, note = request_of(binary_entry("x", np.zeros((0, 4), dtype=np.float32), "FP32"))
    assert rows == [] and note is not None and not note.startswith(BINARY)


FP32_2 = {"name": "x", "shape": [2], "datatype": "FP32"}


def sized(entry: dict[str, Any], size: Any) -> dict[str, Any]:
    return {**entry, "parameters": {"binary_data_size": size}}


def bytes_tensor(shape: list[int], data: bytes) -> tuple[dict[str, Any], bytes]:
    entry = {"name": "x", "shape": shape, "datatype": "BYTES"}
    return sized(entry, len(data)), data


#: Binary data that does not hold what its tensors declare: each gives no rows and a note
#: naming the problem (the runtime answers such a body with a 400).
MALFORMED: dict[str, tuple[list[Any], str]] = {
    "short": ([(sized(FP32_2, 8), b"\0" * 4)], "binary_data_size is 8 bytes but only 4"),
    "left-over": ([(sized(FP32_2, 8), b"\0" * 12)], "4 bytes of binary data that no"),
    "size-does-not-fit-the-shape": (
        [(sized(FP32_2, 4), b"\0" * 4)],
        "binary_data_size is 4 bytes but shape [2] of FP32 needs 8",
    ),
    "shape-does-not-fit-the-size": (
        [(sized({**FP32_2, "shape": [3, 2]}, 8), b"\0" * 8)],
        "shape [3, 2] of FP32 needs 24",
    ),
    "unknown-datatype": ([(sized({**FP32_2, "datatype": "FP8"}, 2), b"\0\0")], "'FP8'"),
    "no-datatype": (
        [({"name": "x", "shape": [1], "parameters": {"binary_data_size": 1}}, b"\0")],
        "unknown datatype",
    ),
    "negative-dimension": ([(sized({**FP32_2, "shape": [-1]}, 8), b"\0" * 8)], "not a shape"),
    "bool-not-0-or-1": (
        [(sized({**FP32_2, "datatype": "BOOL"}, 2), b"\x01\x02")],
        "BOOL binary data must be bytes 0 or 1",
    ),
    "bytes-end-inside-a-length": (
        [bytes_tensor([2], struct.pack("<I", 1) + b"a\x01\x00")],
        "BYTES binary data ends inside a length",
    ),
    "bytes-element-past-the-end": (
        [bytes_tensor([1], struct.pack("<I", 9) + b"abc")],
        "BYTES element 0 claims 9 bytes but only 3 remain",
    ),
    "bytes-fewer-elements-than-the-shape": (
        [bytes_tensor([2], struct.pack("<I", 1) + b"a")],
        "shape [2] holds 2 elements but the BYTES binary data has 1",
    ),
    "bytes-more-elements-than-the-shape": (
        [bytes_tensor([1], (struct.pack("<I", 1) + b"a") * 2)],
        "holds more than the 1 elements of shape [1]",
    ),
    "size-not-an-integer": ([(sized(FP32_2, "8"), b"\0" * 8)], "non-negative integer"),
    "size-negative": ([(sized(FP32_2, -4), b"")], "non-negative integer"),
    "no-data-at-all": (
        [json_entry("y", np.array([1.0, 2.0]), "FP32"), {**FP32_2, "parameters": {}}],
        "'x' has no data: neither 'data' nor binary_data_size",
    ),
    "data-and-size": ([({**sized(FP32_2, 8), "data": [1, 2]}, b"\0" * 8)], "both 'data'"),
    "a-good-json-tensor-beside-a-bad-binary-one": (
        [json_entry("y", np.array([1.0, 2.0]), "FP32"), (sized(FP32_2, 8), b"\0" * 4)],
        "only 4 bytes of binary data remain",
    ),
}


@pytest.mark.parametrize(("tensors", "problem"), MALFORMED.values(), ids=MALFORMED.keys())
def test_malformed_binary_data_gives_no_rows_and_a_note_naming_it(
    tensors: list[Any], problem: str
) -> None:
    rows, single, note = request_of(*tensors)
    assert (rows, single) == ([], False)
    assert note is not None and note.startswith(f"{BINARY}: ") and problem in note, note
    outputs, error, answer_note = answer_of(*tensors)
    assert (outputs, error) == ([], None)
    assert answer_note is not None and answer_note.startswith(f"{BINARY}: ")
    assert problem in answer_note


def test_binary_data_without_the_header_gives_a_note() -> None:
    body, _ = body_of("inputs", [(sized(FP32_2, 8), b"\0" * 8)])
    head = body[:-8]
    rows, _, note = request_rows("v2", head, "application/json", {})
    assert rows == [] and note == (
        f"{BINARY}: input 'x' has binary_data_size but no Inference-Header-Content-Length header"
    )


@pytest.mark.parametrize("length", ["abc", "-1", "99999"])
def test_a_header_length_that_is_not_in_the_body_gives_a_note(length: str) -> None:
    body, _ = body_of("inputs", [(sized(FP32_2, 8), b"\0" * 8)])
    rows, _, note = request_rows("v2", body, "application/octet-stream", {HEADER: length})
    assert rows == [] and note is not None and note.startswith(f"{BINARY}: ")
    assert "Inference-Header-Content-Length must be an integer" in note
    outputs, error, answer_note = response_rows("v2", body, {HEADER: length}, False)
    assert (outputs, error) == ([], None) and answer_note is not None
    assert answer_note.startswith(f"{BINARY}: ")


def test_a_huge_declared_shape_costs_nothing() -> None:
    """A shape is checked against the chunk's bytes before anything is allocated."""
    for shape, size in (([2**40, 2**40], 8), ([2**31] * 3, 8), ([0, 2**62, 2**62], 0)):
        for datatype in ("FP32", "BYTES"):
            tensor = (sized({**FP32_2, "shape": shape, "datatype": datatype}, size), b"\0" * size)
            rows, _, note = request_of(tensor)
            assert rows == [] and note is not None and note.startswith(f"{BINARY}: "), note
            outputs, _, answer_note = answer_of(tensor)
            assert outputs == [] and answer_note is not None
            assert answer_note.startswith(f"{BINARY}: ")


@pytest.mark.parametrize("binary", [True, False], ids=["binary", "json"])
def test_a_tensor_of_empty_rows_has_no_rows_however_many_it_declares(binary: bool) -> None:
    """`[2**40, 0]` holds no value in a few bytes, and was made into 2**40 empty rows: the
    recorder thread ran for hours (ten seconds for 10**7)."""
    for shape in ([10**7, 0], [2**40, 0], [2**40, 3, 0]):
        entry = {"name": "x", "shape": shape, "datatype": "FP32"}
        tensor: Any = (sized(entry, 0), b"") if binary else {**entry, "data": []}
        rows, _, note = request_of(tensor)
        assert rows == [] and note is not None and not note.startswith(BINARY)
        assert answer_of(tensor) == ([], None, None)


def test_a_note_quoting_the_body_is_cut_as_a_runtime_error_is() -> None:
    """A datatype of 100,000 characters gave a note as long in every row."""
    tensor = (sized({**FP32_2, "datatype": "X" * 100_000}, 8), b"\0" * 8)
    rows, _, note = request_of(tensor)
    assert rows == [] and note is not None
    assert note.startswith(f"{BINARY}: input 'x': unknown datatype 'XXX")
    assert len(note) < 2_100 and note.endswith(" more characters)")


def test_a_shape_of_more_dimensions_than_numpy_holds_is_refused_before_it_is_counted() -> None:
    """The product of 100,000 dimensions of 2**62 took a minute of the recorder thread
    (and of the shadow task's), before the size check that refused it."""
    with pytest.raises(BinaryDataError, match="shape has 65 dimensions; a tensor has at most 64"):
        decode_chunk(b"\0", "UINT8", [1] * 65)
    tensor = (sized({**FP32_2, "shape": [2**62] * 100_000}, 8), b"\0" * 8)
    rows, _, note = request_of(tensor)
    assert rows == [] and note == (
        f"{BINARY}: input 'x': shape has 100000 dimensions; a tensor has at most 64"
    )


def test_data_null_beside_binary_data_is_refused_as_the_runtime_refuses_it() -> None:
    rows, _, note = request_of(({**sized(FP32_2, 8), "data": None}, b"\0" * 8))
    assert rows == [] and note == f"{BINARY}: input 'x' has both 'data' and binary_data_size"


@pytest.mark.parametrize("binary", [True, False], ids=["binary", "json"])
def test_values_wrapped_in_dozens_of_lists_are_not_made_into_rows(binary: bool) -> None:
    """`[N, 1, ..., 1]` of 64 dimensions is N values in N bytes and 63N lists: 50 KB took
    seconds and hundreds of megabytes, 16 MiB would take the gateway's memory."""
    count = 50_000
    for shape in ([count] + [1] * 63, [count // 2, 2] + [1] * 62):
        array = np.ones(shape, dtype=np.uint8)
        tensor: Any = (
            binary_entry("x", array, "UINT8") if binary else json_entry("x", array, "UINT8")
        )
        rows, _, note = request_of(tensor)
        assert rows == [] and note == "request body has an unexpected shape"
        assert answer_of(tensor) == ([], None, None)


def test_a_few_trailing_dimensions_of_one_are_still_rows() -> None:
    """What models take: a list per value or fewer, or a few more with trailing 1s."""
    for shape in ([3, 1, 1, 1, 1], [2, 8, 8, 1], [2, 3, 1, 1, 1, 1, 1]):
        array = np.arange(np.prod(shape), dtype=np.float32).reshape(shape)
        rows, _, note = request_of(binary_entry("x", array, "FP32"))
        json_rows, _, _ = request_of(json_entry("x", array, "FP32"))
        assert note is None and len(rows) == shape[0] and rows == json_rows

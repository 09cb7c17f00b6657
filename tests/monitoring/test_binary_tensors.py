"""Binary tensor values as the model gets them, and as a record writes them.

``decode_chunk`` gives the model the values sent, exactly. ``shortest_decimals`` gives
the prediction log the numbers the runtime's JSON answers write for the same values: the
shortest decimal that reads back as the same FP16 or FP32 value, which is numpy's
``repr`` (``runtime.codecs.json``). Small arrays and large ones take different paths
(numpy, or pyarrow in bulk): both are held to numpy's digits here.
"""

from __future__ import annotations

import numpy as np
import pytest

from monitoring.binary_tensors import (
    SHORTEST_DECIMALS_MAX_VALUES,
    decode_chunk,
    shortest_decimals,
)
from runtime.codecs.json import array_to_json

#: More values than shortest_decimals prints one by one: the bulk path.
MANY = 1_000


def as_numpy_prints(array: np.ndarray) -> np.ndarray:
    """What the runtime's JSON answers write: numpy's shortest repr, read as a double."""
    return array.astype(str).astype(np.float64)


def same(got: np.ndarray, expected: np.ndarray) -> bool:
    """Equal value by value, NaN where NaN, and the sign of zero kept."""
    return bool(
        got.shape == expected.shape
        and np.array_equal(got, expected, equal_nan=True)
        and np.array_equal(np.signbit(got), np.signbit(expected))
    )


def wire(array: np.ndarray) -> bytes:
    return np.ascontiguousarray(array, dtype=array.dtype.newbyteorder("<")).tobytes()


def float32_bits(values: np.ndarray) -> np.ndarray:
    """Every float32 whose bits are among ``values`` (uint32)."""
    return values.astype(np.uint32).view(np.float32)


#: FP32 values and the decimals JSON answers carry for them: the exact double is longer.
FP32_DECIMALS = {
    0.1: 0.1,
    7.25: 7.25,
    -2.5: -2.5,
    1 / 3: 0.33333334,
    3.4e38: 3.4e38,
    1e-45: 1e-45,  # the smallest subnormal
    16777217: 16777216.0,  # 2**24 + 1 is no float32: it reads 2**24
    1048576.25: 1048576.2,  # halfway between two 8-digit decimals: the even one
    1048576.75: 1048576.8,
    1e11: 1e11,  # float32 1e11 is 99999997952
}


@pytest.mark.parametrize("count", [1, MANY], ids=["one-by-one", "in-bulk"])
def test_fp32_values_are_the_decimals_the_json_answers_write(count: int) -> None:
    sent = np.array(list(FP32_DECIMALS), dtype=np.float32)
    recorded = shortest_decimals(np.tile(sent, count).reshape(count, -1))
    assert recorded.dtype == np.float64
    assert recorded.shape == (count, len(FP32_DECIMALS))
    assert recorded[0].tolist() == list(FP32_DECIMALS.values())
    assert float(np.float32(0.1)) == 0.10000000149011612  # what was recorded before


@pytest.mark.parametrize("count", [1, MANY], ids=["one-by-one", "in-bulk"])
def test_fp16_values_are_their_own_shortest_decimals(count: int) -> None:
    """FP16 0.1 is 0.0999755859375, and its shortest decimal is FP16's own: 65504, the
    largest FP16, is read back from 65500."""
    sent = np.array([0.1, 2.5, 65504, 6e-8], dtype=np.float16)
    recorded = shortest_decimals(np.tile(sent, count))
    assert recorded[:4].tolist() == [0.1, 2.5, 65500.0, 6e-8]


def test_every_fp16_value_is_what_numpy_prints() -> None:
    every = np.arange(2**16, dtype=np.uint16).view(np.float16)
    assert same(shortest_decimals(every), as_numpy_prints(every))
    for one in every[::997]:
        assert same(shortest_decimals(np.array([one])), as_numpy_prints(np.array([one])))


def test_fp32_values_in_bulk_are_what_numpy_prints() -> None:
    """Any bits (subnormals, NaN, infinities and -0 among them), the values around every
    power of two and of ten, and a stretch where FP32 steps by eighths: 1048576.25 is
    halfway between two 8-digit decimals, and both read back as it."""
    rng = np.random.default_rng(7)
    anything = float32_bits(rng.integers(0, 2**32, 100_000, dtype=np.uint64))
    powers = np.concatenate([2.0 ** np.arange(-149, 128), 10.0 ** np.arange(-45, 39)])
    bits = powers.astype(np.float32).view(np.uint32).astype(np.int64)
    around = float32_bits((bits[:, None] + np.arange(-20, 21)).ravel())
    start = np.float32(2**20).view(np.uint32)  # from 2**20 FP32 steps by 1/8
    eighths = float32_bits(np.arange(start, start + 20_000, dtype=np.uint32))
    for values in (anything, around, eighths):
        assert values.size > MANY
        assert same(shortest_decimals(values), as_numpy_prints(values))


def test_the_model_gets_the_values_sent_and_the_record_a_copy() -> None:
    """The runtime decodes inputs with ``decode_chunk``: float32 as sent, bit for bit."""
    sent = np.array([[0.1], [1 / 3], [np.nan]], dtype=np.float32)
    decoded = decode_chunk(wire(sent), "FP32", [3, 1])
    assert decoded.dtype == np.float32
    assert decoded.tobytes() == sent.tobytes()
    recorded = shortest_decimals(decoded)
    assert recorded.tolist()[:2] == [[0.1], [0.33333334]]
    assert decoded.tobytes() == sent.tobytes()  # left as it was


@pytest.mark.parametrize(
    "array",
    [
        np.array([0.1, 1e308]),
        np.array([[1, 2]], dtype=np.int64),
        np.array([True, False]),
        np.array([b"male"], dtype=object),
    ],
    ids=["FP64", "INT64", "BOOL", "BYTES"],
)
def test_other_datatypes_are_left_as_they_are(array: np.ndarray) -> None:
    assert shortest_decimals(array) is array


@pytest.mark.parametrize("count", [1, MANY], ids=["one-by-one", "in-bulk"])
def test_any_layout_of_fp32_keeps_its_shape(count: int) -> None:
    big_endian = np.full((count, 2), 0.1, dtype=">f4")
    assert shortest_decimals(big_endian).tolist() == [[0.1, 0.1]] * count
    columns = np.full((2, count), 0.1, dtype=np.float32).T  # not contiguous
    assert shortest_decimals(columns).tolist() == [[0.1, 0.1]] * count
    assert shortest_decimals(np.zeros((0, count), dtype=np.float32)).shape == (0, count)


@pytest.mark.parametrize("datatype", [np.float32, np.float16])
def test_a_tensor_the_runtime_writes_with_exact_doubles_is_recorded_with_them(
    datatype: type[np.floating],
) -> None:
    """Past ``SHORTEST_DECIMALS_MAX_VALUES`` values the runtime's JSON answers write exact
    doubles (cheap, for a tensor too large to read by eye), and the record follows them."""
    for count in (SHORTEST_DECIMALS_MAX_VALUES, SHORTEST_DECIMALS_MAX_VALUES + 1):
        sent = np.full(count, 0.1, dtype=datatype)
        written = array_to_json(sent)
        assert shortest_decimals(sent).tolist() == written
        assert written[0] == (0.1 if count == SHORTEST_DECIMALS_MAX_VALUES else float(sent[0]))

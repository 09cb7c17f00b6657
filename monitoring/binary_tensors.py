"""Triton's binary tensor data extension: the bytes after an inference JSON, as arrays.

An Open Inference Protocol body (request or answer) may carry tensors after its JSON: the
``Inference-Header-Content-Length`` header gives the JSON's length (``split_body``), each
such tensor's entry has ``parameters.binary_data_size`` and no ``data``, and the chunks
follow in the order of those entries. ``decode_chunk`` reads one chunk by its datatype
and shape: little-endian, row-major; ``BOOL`` one byte (0 or 1), ``FP16`` two; a ``BYTES``
element is a 4-byte little-endian length (``LENGTH_PREFIX``) and then its bytes.

The decoding the runtime and the gateway share, as with ``body_encoding``: the runtime
reads an infer request with it (``runtime.codecs.oip``, which answers ``BinaryDataError``
with a 400 naming the input), and the gateway's recorder reads requests and answers back
with it for the prediction log (``gateway.exchange``, which notes the error in the row,
off the request path). Pure: bytes in, arrays out, never more work than the bytes given
(a shape is checked against the chunk's length before anything is allocated).

``decode_chunk`` gives the values sent, exactly: what the model receives. A record wants
them as the runtime's JSON answers write them, and for ``FP16`` and ``FP32`` that is the
shortest decimal that reads back as the same value (``0.1``, where the exact double of
FP32 ``0.1`` is ``0.10000000149011612``): ``shortest_decimals`` gives those as doubles, so
that a value reads the same in the prediction log whichever encoding the client chose.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Sequence
from functools import cache

import numpy as np

HEADER_LENGTH = "Inference-Header-Content-Length"
#: The length in front of each ``BYTES`` element.
LENGTH_PREFIX = struct.Struct("<I")
#: Each fixed-size datatype as it is on the wire (``BYTES`` elements have a length each).
WIRE_DTYPES: dict[str, np.dtype] = {
    name: np.dtype(code)
    for name, code in {
        "BOOL": "u1",  # read as bytes: anything but 0 or 1 is refused, not cast to True
        "UINT8": "u1",
        "UINT16": "<u2",
        "UINT32": "<u4",
        "UINT64": "<u8",
        "INT8": "i1",
        "INT16": "<i2",
        "INT32": "<i4",
        "INT64": "<i8",
        "FP16": "<f2",
        "FP32": "<f4",
        "FP64": "<f8",
    }.items()
}
DATATYPES = (*WIRE_DTYPES, "BYTES")
#: The most dimensions a tensor has (numpy's limit).
MAX_RANK = 64
#: FP16/FP32 tensors with more values than this are written by the runtime's JSON answers
#: (``runtime.codecs.json``) and recorded (``shortest_decimals``) with their exact doubles,
#: which cost nothing to write: past it, a large tensor's digits are no one's to read.
SHORTEST_DECIMALS_MAX_VALUES = 100_000
#: Up to this many values, ``shortest_decimals`` has numpy print each one (a few
#: microseconds a value); above, pyarrow does it in bulk (some 30 microseconds a call).
_FEW_VALUES = 16


class BinaryDataError(ValueError):
    """Binary tensor data that does not hold what its tensor declares; the message names
    no tensor (the caller prefixes it)."""


def split_body(body: bytes, header_length: int | str | None) -> tuple[bytes, bytes]:
    """(the JSON, the binary data after it) by the ``Inference-Header-Content-Length``
    header; the whole body is JSON without one."""
    if header_length is None:
        return body, b""
    try:
        length = int(header_length)
    except ValueError:
        length = -1
    if length < 0 or length > len(body):
        raise BinaryDataError(
            f"{HEADER_LENGTH} must be an integer between 0 and the body's {len(body)} bytes, "
            f"got {header_length!r}"
        )
    return body[:length], body[length:]


def decode_chunk(chunk: bytes, datatype: str, shape: Sequence[int]) -> np.ndarray:
    """The tensor of ``shape`` (non-negative dimensions) that ``chunk`` holds, in native
    byte order; a ``BYTES`` tensor is an object array of ``bytes``. A shape of more
    dimensions than numpy holds is refused before anything is counted: the product of
    100,000 dimensions takes a minute to compute."""
    if len(shape) > MAX_RANK:
        raise BinaryDataError(f"shape has {len(shape)} dimensions; a tensor has at most {MAX_RANK}")
    count = math.prod(shape)
    if datatype == "BYTES":
        return _bytes_elements(chunk, count, shape)
    dtype = WIRE_DTYPES.get(datatype)
    if dtype is None:
        raise BinaryDataError(f"unknown datatype '{datatype}' (expected one of {_KNOWN})")
    if len(chunk) != count * dtype.itemsize:
        raise BinaryDataError(
            f"binary_data_size is {len(chunk)} bytes but shape {_format(shape)} of "
            f"{datatype} needs {count * dtype.itemsize}"
        )
    wire = np.frombuffer(chunk, dtype=dtype)
    if datatype == "BOOL":
        if wire.size and wire.max() > 1:
            raise BinaryDataError("BOOL binary data must be bytes 0 or 1")
        return _shaped(wire.astype(np.bool_), shape)
    return _shaped(wire.astype(dtype.newbyteorder("=")), shape)


def shortest_decimals(array: np.ndarray) -> np.ndarray:
    """An ``FP16`` or ``FP32`` array as doubles, each the shortest decimal that reads back
    as the same value in the array's precision (``0.1``, not ``0.10000000149011612``):
    the numbers the runtime's JSON answers write (``runtime.codecs.json``, numpy's
    ``repr``). NaN and infinities stay as they are; other arrays, and those of more than
    ``SHORTEST_DECIMALS_MAX_VALUES`` values (exact doubles, as the runtime writes them),
    are returned unchanged.

    numpy takes over a second to print a million values, so a larger array is printed and
    read back by pyarrow's casts, about ten times faster, with the same shortest digits
    (tests/monitoring/test_binary_tensors.py holds them to numpy's); ``FP16`` has 65,536
    values, looked up in a table.
    """
    if array.dtype.kind != "f" or array.dtype.itemsize > 4:
        return array
    if array.size > SHORTEST_DECIMALS_MAX_VALUES:
        return array
    if array.size <= _FEW_VALUES:
        return array.astype(str).astype(np.float64)
    if array.dtype.itemsize == 2:
        return _fp16_shortest()[np.ascontiguousarray(array, dtype=np.float16).view(np.uint16)]
    # Imported here: the runtime decodes with this module and never records.
    import pyarrow as pa  # type: ignore[import-untyped]
    import pyarrow.compute as pc  # type: ignore[import-untyped]

    values = pa.array(np.ascontiguousarray(array, dtype=np.float32).ravel(), type=pa.float32())
    doubles = pc.cast(pc.cast(values, pa.string()), pa.float64()).to_numpy()
    shaped: np.ndarray = doubles.reshape(array.shape)
    return shaped


@cache
def _fp16_shortest() -> np.ndarray:
    """Every FP16 value's shortest decimal as a double, by its bits (512 KiB, made once)."""
    every = np.arange(2**16, dtype=np.uint16).view(np.float16)
    table: np.ndarray = every.astype(str).astype(np.float64)
    return table


def _bytes_elements(chunk: bytes, count: int, shape: Sequence[int]) -> np.ndarray:
    elements: list[bytes] = []
    position = 0
    while position < len(chunk):
        if len(elements) == count:
            raise BinaryDataError(
                f"BYTES binary data holds more than the {count} elements of shape {_format(shape)}"
            )
        if position + LENGTH_PREFIX.size > len(chunk):
            raise BinaryDataError("BYTES binary data ends inside a length")
        (length,) = LENGTH_PREFIX.unpack_from(chunk, position)
        position += LENGTH_PREFIX.size
        if position + length > len(chunk):
            raise BinaryDataError(
                f"BYTES element {len(elements)} claims {length} bytes but only "
                f"{len(chunk) - position} remain"
            )
        elements.append(chunk[position : position + length])
        position += length
    if len(elements) != count:
        raise BinaryDataError(
            f"shape {_format(shape)} holds {count} elements but the BYTES binary data has "
            f"{len(elements)}"
        )
    array = np.empty(count, dtype=object)
    array[:] = elements
    return _shaped(array, shape)


def _shaped(flat: np.ndarray, shape: Sequence[int]) -> np.ndarray:
    try:
        return flat.reshape(shape)
    except ValueError as exc:  # [0, 2**62, 2**62] holds no element, but no array has it
        raise BinaryDataError(f"shape {_format(shape)} cannot be held: {exc}") from None


_KNOWN = ", ".join(DATATYPES)


def _format(shape: Sequence[int]) -> str:
    return "[" + ", ".join(map(str, shape)) + "]"

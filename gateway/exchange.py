"""What one proxied request and its answer say, as rows for the prediction log.

Pure functions over bodies in the three dialects: a request of N instances becomes N rows
of ``{feature: value}`` and the answer N rows of ``{output: value}``. A value is a scalar
when the tensor row holds one element (``[[7], [9]]`` gives rows ``7`` and ``9``), else a
(nested) list. Image uploads are recorded as a digest, size, content type and summary
statistics (width, height, mode, mean brightness), the bytes themselves only when
configured. A body that cannot be read yields no rows and a note, never an exception:
recording must not fail a request.

Which form an eval body has (one instance, or columns with the batch dimension) depends on
the model's input shapes, which only the runtime knows: ``{"features": [5.1, 3.5, 1.4,
0.2]}`` is one instance of a ``[-1, 4]`` input but four of a ``[-1, 1]`` one. The runtime
says how it read the body in its answer's ``X-Driftgate-Eval-Form`` header
(``EVAL_FORM_HEADER``: ``instance`` or ``columns``); without it (an older runtime, or a
refused request) the form is guessed: one instance when no value is a list.

An Open Inference Protocol tensor sent in Triton's binary tensor data extension
(``parameters.binary_data_size``, its bytes after the JSON; what tritonclient sends by
default, in requests and answers) is recorded as if its values were JSON ``data``: read
with ``monitoring.binary_tensors`` as the runtime reads it, then split into rows the same
way, as plain numbers and bools. ``BYTES`` elements become text, UTF-8 decoded, with U+FFFD
for bytes that are not UTF-8, as the runtime's JSON answers carry them: the column stays
text, and exact bytes are not kept. FP16 and FP32 values are the shortest decimal that
reads back as the value sent (FP32 ``0.1`` is ``0.1``, not its exact double
``0.10000000149011612``), the digits the runtime's JSON answers write, so that a value
reads the same in the log whichever encoding the client chose (exact doubles past
``SHORTEST_DECIMALS_MAX_VALUES`` values, as the runtime writes them). NaN and
infinities are null, as in the runtime's JSON answers (JSON has neither). A body whose
binary data does not hold what its tensors declare (short, left over, a size that does not
fit a shape, an unknown datatype), or with a tensor whose values are not in the body at
all (shared memory), is one the runtime refuses: it yields no rows, never some of its
columns, and the note ``BINARY: <the problem>``. There is no cap beyond JSON's: no cell or
row is limited for either, and a request body is at most ``max_body_bytes`` either way (16
MiB hold 16M UINT8 values binary, at most 8M numbers as JSON). Binary data is read in time
linear in its bytes, and every tensor of a body is read and checked before any becomes
Python values, so a bad one late in a body costs little for those before it. A tensor
with no values (a dimension of 0) has no rows, binary or JSON, whatever its first
dimension says: ``[2**40, 0]`` is a few bytes of JSON, not 2**40 empty rows; and one
whose values would be wrapped in more than ``MAX_LISTS_PER_VALUE`` lists each (``[N, 1,
..., 1]`` of 64 dimensions) is not made into rows, as an unexpected shape. A note quoting
the body is cut to ``MAX_NOTE_CHARS``, as the runtime's errors are.

Tensors of one body with different numbers of rows cannot be split into instances
without guessing: such a body is one row of whole tensors (list cells), with the note
``MISREAD``, never rows padded with NULL.

A request body sent with ``Content-Encoding: gzip`` or ``deflate`` reaches the runtime as
sent; ``readable_body`` inflates it as the runtime does (``monitoring.body_encoding``), to
at most the gateway's ``max_body_bytes``, before it is read here. This runs on the
recorder thread, never on the request path.
"""

from __future__ import annotations

import base64
import hashlib
import io
from collections.abc import Mapping
from typing import Any

import msgspec
import numpy as np

from monitoring.binary_tensors import (
    HEADER_LENGTH,
    BinaryDataError,
    decode_chunk,
    shortest_decimals,
    split_body,
)
from monitoring.body_encoding import BodyEncodingError, InflatesPastLimit, decode_body

Row = dict[str, Any]
#: What a decoded body of an unexpected shape raises here: a value of the wrong type, a
#: tensor without its ``name`` (``KeyError``), data that does not fit its ``shape``.
_UNEXPECTED_SHAPE = (AttributeError, TypeError, ValueError, LookupError)
#: The runtime's answer header saying how it read an eval body (``runtime.codecs.simple``).
EVAL_FORM_HEADER = "x-driftgate-eval-form"
#: The note of a request that names its inputs and holds no row of them (a batch of 0):
#: ``exchange_records`` logs no row for it when it was answered.
NO_ROWS = "the request had no rows"
#: The start of the note of a body whose binary tensor data does not hold what its
#: tensors declare, or one of whose tensors has no values in the body (shared memory):
#: ``BINARY: <the problem>``. No rows are made of the body.
BINARY = "binary tensor data could not be read"
#: The longest ``BINARY`` note: the runtime's errors are cut at this length too
#: (``runtime.errors.MAX_MESSAGE_CHARS``).
MAX_NOTE_CHARS = 2_000
#: The most lists a tensor's values may be wrapped in, per value (``_check_nesting``).
MAX_LISTS_PER_VALUE = 8
#: The note of a body, or an exchange, whose instances could not be told apart.
MISREAD = (
    "the instances of this exchange could not be told apart (tensors with different "
    "numbers of rows, or a request and an answer of different counts): logged as one row "
    "of whole tensors"
)


class _Ragged(Exception):
    """Tensors of one body with different numbers of rows: carries them as one row."""

    def __init__(self, row: Row) -> None:
        super().__init__("tensors with different numbers of rows")
        self.row = row


def readable_body(
    body: bytes, headers: Mapping[str, str], limit: int
) -> tuple[bytes | None, str | None]:
    """(the request body as the runtime read it, None), or (None, a note saying why it
    cannot be read): inflated as its ``content-encoding`` header says, to at most ``limit``
    bytes (the gateway's ``max_body_bytes``), so that a compression bomb costs no more."""
    try:
        return decode_body(body, headers.get("content-encoding"), limit), None
    except InflatesPastLimit as exc:
        return None, f"request body not recorded: {exc} (the gateway's max_body_bytes)"
    except BodyEncodingError as exc:
        return None, f"request body could not be decoded: {exc}"


def request_rows(
    dialect: str,
    body: bytes,
    content_type: str,
    headers: Mapping[str, str],
    keep_image_bytes: bool = False,
    *,
    eval_form: str | None = None,
) -> tuple[list[Row], bool, str | None]:
    """(rows, single_instance, note) of a request body; ``eval_form`` is the runtime's
    ``X-Driftgate-Eval-Form`` answer header (``instance`` | ``columns``), when it sent one."""
    if content_type.startswith("image/"):
        row: Row = {
            "image_sha256": hashlib.sha256(body).hexdigest(),
            "image_bytes": len(body),
            "image_content_type": content_type,
            **image_summary(body),
        }
        if keep_image_bytes:
            row["image_b64"] = base64.b64encode(body).decode()
        return [row], True, None
    try:
        head, binary = _split(body, headers)
        payload = msgspec.json.decode(head)
    except BinaryDataError as exc:
        return [], False, _binary_note(exc)
    except (msgspec.DecodeError, ValueError, UnicodeDecodeError):
        return [], False, "request body is not JSON"
    except RecursionError:  # msgspec recurses
        return [], False, "request body is nested too deeply"
    try:
        if dialect == "v2":
            tensors = payload.get("inputs")
            rows = _oip_rows(tensors, binary, "input")
            return rows, False, NO_ROWS if tensors and not rows else None
        if dialect == "tfserving":
            rows = _tfserving_request_rows(payload)
            named = "instances" in payload or bool(payload.get("inputs"))
            return rows, False, NO_ROWS if named and not rows else None
        rows, single, note = _eval_rows(payload, eval_form)
        return rows, single, NO_ROWS if payload and not rows and not note else note
    except _Ragged as ragged:
        return [ragged.row], False, MISREAD
    except BinaryDataError as exc:
        return [], False, _binary_note(exc)
    except _UNEXPECTED_SHAPE:
        return [], False, "request body has an unexpected shape"


#: Images larger than this many pixels are summarised by size only (no decoding).
MAX_SUMMARY_PIXELS = 40_000_000


def image_summary(body: bytes) -> Row:
    """Width, height, mode and mean brightness (0-255, over a thumbnail) of an image, for
    drift on images without keeping them; empty when the bytes are not a readable image
    (the runtime answers those with a 400, which is recorded with its error)."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(body)) as image:
            width, height = image.size
            summary: Row = {"image_width": width, "image_height": height, "image_mode": image.mode}
            if width * height <= MAX_SUMMARY_PIXELS:
                image.draft("L", (64, 64))  # JPEG: decode at a reduced size
                small = image.convert("L")
                small.thumbnail((64, 64))
                summary["image_mean"] = round(float(np.asarray(small).mean()), 3)
            return summary
    except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError):
        return {}


def response_rows(
    dialect: str, body: bytes, headers: Mapping[str, str], single_instance: bool
) -> tuple[list[Row], str | None, str | None]:
    """(rows, error message, note) of an answer body; the error of a 4xx/5xx
    ``{"error": ...}``, the note ``MISREAD`` when its tensors have different row counts,
    ``BINARY`` when its binary tensor data cannot be read."""
    try:
        head, binary = _split(body, headers)
        payload = msgspec.json.decode(head)
    except BinaryDataError as exc:
        return [], None, _binary_note(exc)
    except (msgspec.DecodeError, ValueError, UnicodeDecodeError, RecursionError):
        return [], None, None
    if not isinstance(payload, dict):
        return [], None, None
    if "error" in payload:
        return [], str(payload["error"]), None
    try:
        return _answer_rows(dialect, payload, binary, single_instance), None, None
    except _Ragged as ragged:
        return [ragged.row], None, MISREAD
    except BinaryDataError as exc:
        return [], None, _binary_note(exc)
    except _UNEXPECTED_SHAPE:
        return [], None, None


def whole(rows: list[Row]) -> Row:
    """Rows of one body put back together as one row of whole columns (list cells)."""
    if len(rows) == 1:
        return rows[0]
    names = dict.fromkeys(name for row in rows for name in row)
    return {name: [row.get(name) for row in rows] for name in names}


def _answer_rows(
    dialect: str, payload: dict[str, Any], binary: bytes | None, single_instance: bool
) -> list[Row]:
    if dialect == "v2":
        return _oip_rows(payload.get("outputs"), binary, "output")
    if dialect == "tfserving":
        if "predictions" in payload:
            return [_named(item, "prediction") for item in payload["predictions"]]
        return _columns(_named(payload.get("outputs"), "outputs"))
    outputs = payload.get("outputs") or {}
    if single_instance:
        return [{name: _cell(value) for name, value in outputs.items()}]
    return _columns(outputs)


def _eval_rows(payload: Any, form: str | None) -> tuple[list[Row], bool, str | None]:
    if not isinstance(payload, dict):
        return [], False, "request body is not a JSON object"
    if form == "instance":
        single = True
    elif form == "columns":
        single = False
    else:  # no header: a guess that is wrong for a vector input's single instance
        single = bool(payload) and not any(isinstance(value, list) for value in payload.values())
    if single:
        return [{name: _cell(value) for name, value in payload.items()}], True, None
    return _columns(payload), False, None


def _tfserving_request_rows(payload: Any) -> list[Row]:
    if "instances" in payload:
        return [_named(item, "instance") for item in payload["instances"]]
    return _columns(_named(payload.get("inputs"), "inputs"))


def _split(body: bytes, headers: Mapping[str, str]) -> tuple[bytes, bytes | None]:
    """(the JSON, the binary tensor data after it: None without the header that says where
    the JSON ends)."""
    header_length = headers.get(HEADER_LENGTH.lower()) or None
    head, binary = split_body(body, header_length)
    return head, None if header_length is None else binary


def _oip_rows(tensors: Any, binary: bytes | None, role: str) -> list[Row]:
    read = _chunks(tensors or [], binary, role)
    # Every tensor is read before any becomes Python values: a bad one costs nothing more.
    arrays = [_tensor_array(tensor, chunk, role) for tensor, chunk in read]
    for (tensor, _), array in zip(read, arrays, strict=True):
        if array is not None and array.size:  # with no values, it has no rows
            _check_nesting(tensor, array)
    columns: dict[str, list[Any]] = {}
    for (tensor, chunk), array in zip(read, arrays, strict=True):
        if array is not None and array.size == 0:
            # No values, so no rows: a shape of [2**40, 0] holds as many empty rows.
            columns[tensor["name"]] = []
        elif array is not None:
            values = array if chunk is None else _plain(array)
            # A row of a 1-D tensor is a scalar, of a wider one a (nested) list.
            columns[tensor["name"]] = [_cell(row) for row in values.tolist()]
    return _transpose(columns)


def _chunks(tensors: list[Any], binary: bytes | None, role: str) -> list[tuple[Any, bytes | None]]:
    """Each tensor with its binary data (None: its values are JSON ``data``), checked as the
    runtime checks them: the sizes must add up to the binary data exactly."""
    chunks: list[tuple[Any, bytes | None]] = []
    offset = 0
    for tensor in tensors:
        size = (tensor.get("parameters") or {}).get("binary_data_size")
        if size is None:
            chunks.append((tensor, None))
            continue
        where = f"{role} '{tensor['name']}'"
        if "data" in tensor:  # even `"data": null`, as the runtime refuses it
            raise BinaryDataError(f"{where} has both 'data' and binary_data_size")
        if type(size) is not int or size < 0:
            raise BinaryDataError(f"{where}: binary_data_size must be a non-negative integer")
        if binary is None:
            raise BinaryDataError(f"{where} has binary_data_size but no {HEADER_LENGTH} header")
        if offset + size > len(binary):
            raise BinaryDataError(
                f"{where}: binary_data_size is {size} bytes but only {len(binary) - offset} "
                "bytes of binary data remain"
            )
        chunks.append((tensor, binary[offset : offset + size]))
        offset += size
    if binary is not None and offset != len(binary):
        raise BinaryDataError(f"{len(binary) - offset} bytes of binary data that no {role} claims")
    return chunks


def _tensor_array(tensor: Any, chunk: bytes | None, role: str) -> np.ndarray | None:
    """A tensor's values shaped (None: nothing to record, as for a tensor of rank 0)."""
    shape = tensor.get("shape") or []
    if chunk is None:
        data = tensor.get("data")
        if data is None:  # in shared memory, say: not in the body (the runtime refuses it)
            raise BinaryDataError(
                f"{role} '{tensor['name']}' has no data: neither 'data' nor binary_data_size"
            )
        return np.array(data, dtype=object).reshape(shape) if shape else None
    if not shape:
        return None
    if not all(type(dim) is int and dim >= 0 for dim in shape):
        raise BinaryDataError(f"{role} '{tensor['name']}': shape {shape!r} is not a shape")
    try:
        return decode_chunk(chunk, tensor.get("datatype"), shape)
    except BinaryDataError as exc:
        raise BinaryDataError(f"{role} '{tensor['name']}': {exc}") from None


def _check_nesting(tensor: Any, array: np.ndarray) -> None:
    """``ValueError`` for a tensor whose values would be wrapped in many more lists than
    there are values: ``[N, 1, 1, ..., 1]`` of 64 dimensions is N values (N bytes binary,
    2N of JSON) and 63N lists, gigabytes for a 1 MB body. A model's tensors make a list per
    value or fewer (``[N, 28, 28, 1]``), or a few with trailing 1s (``[N, 1, 1, 1]``)."""
    lists, product = 0, 1
    for dim in array.shape[:-1]:
        product *= dim
        lists += product
    if lists > MAX_LISTS_PER_VALUE * array.size:
        raise ValueError(f"tensor '{tensor['name']}' has {array.ndim} dimensions of lists")


def _binary_note(exc: BinaryDataError) -> str:
    """The note of a body whose binary data cannot be read, as long as a runtime error at
    most: its message quotes the body (a name, a shape of a million dimensions)."""
    note = f"{BINARY}: {exc}"
    if len(note) <= MAX_NOTE_CHARS:
        return note
    return f"{note[:MAX_NOTE_CHARS]}... ({len(note) - MAX_NOTE_CHARS} more characters)"


def _plain(array: np.ndarray) -> np.ndarray:
    """Binary values as JSON has them: text for bytes, null for NaN and infinities."""
    if array.dtype == object:  # BYTES: bytes elements
        text = [element.decode("utf-8", "replace") for element in array.flat]
        return np.array(text, dtype=object).reshape(array.shape)
    array = shortest_decimals(array)
    if array.dtype.kind == "f" and not (finite := np.isfinite(array)).all():
        array = array.astype(object)
        array[~finite] = None
    return array


def _named(item: Any, name: str) -> Row:
    return {k: _cell(v) for k, v in item.items()} if isinstance(item, dict) else {name: _cell(item)}


def _columns(columns: Mapping[str, Any]) -> list[Row]:
    return _transpose(
        {
            name: [_cell(row) for row in value] if isinstance(value, list) else [value]
            for name, value in columns.items()
        }
    )


def _transpose(columns: Mapping[str, list[Any]]) -> list[Row]:
    """One row per index; raises ``_Ragged`` when the columns differ in length: padding
    the short ones with NULL would pair values of different instances."""
    lengths = {len(values) for values in columns.values()}
    if len(lengths) > 1:
        raise _Ragged(dict(columns))
    rows = max(lengths, default=0)
    return [{name: values[i] for name, values in columns.items()} for i in range(rows)]


def _cell(value: Any) -> Any:
    """Unwrap single-element lists: the row ``[7]`` of a ``[-1, 1]`` tensor is ``7``."""
    while isinstance(value, list) and len(value) == 1:
        value = value[0]
    return value

"""Strict JSON shared by the codecs: body decoding, nested lists <-> numpy arrays.

Decoding uses msgspec, which refuses what JSON does not allow (``NaN``, ``Infinity``, trailing
garbage, invalid UTF-8) and reports the byte position. ``nested_to_array`` turns a JSON value
(a scalar or rectangular nested lists) into a numpy ``object`` array of the raw JSON scalars;
typing those values against a datatype is ``runtime.validation.coerce``'s job, so every
dialect reports wrong types with the same words.

Going out, ``array_to_json`` renders an array as nested lists. FP16/FP32 values are written
with their shortest round-tripping decimal (``0.1``, not ``0.10000000149011612``; up to
``SHORTEST_DECIMALS_MAX_VALUES`` values a tensor, the recorder's limit too), and values
JSON cannot carry (NaN, infinities) are written as ``null``. How ``bytes`` elements are
written depends on the dialect, so the caller passes that rule in.
"""

from __future__ import annotations

import base64
import binascii
import math
from collections.abc import Callable, Sequence
from typing import Any

import msgspec
import numpy as np

from monitoring.binary_tensors import SHORTEST_DECIMALS_MAX_VALUES
from runtime.errors import BadRequest
from runtime.tensors import MAX_RANK


def decode_json(body: bytes, what: str = "the request body", *, images: bool = False) -> Any:
    """Any JSON value from ``body``; ``BadRequest`` naming the position when it is not JSON
    (``images``: an endpoint that also takes images says so for a PNG or JPEG body)."""
    if not body.strip():
        raise BadRequest(f"{what} is empty; expected JSON")
    try:
        return msgspec.json.decode(body)
    except msgspec.DecodeError as exc:
        raise BadRequest(
            f"{what} is not valid JSON: {exc}{not_json_hint(body, images=images)}"
        ) from None
    except UnicodeDecodeError as exc:  # msgspec raises this, not DecodeError, inside strings
        raise BadRequest(
            f"{what} is not valid JSON: a string is not UTF-8 ({exc.reason})"
        ) from None
    except RecursionError:
        raise BadRequest(f"{what} is nested too deeply") from None


#: Bodies that are not JSON but something a client plausibly sent by mistake.
_NOT_JSON = (
    (b"\xef\xbb\xbf", "it starts with a UTF-8 byte order mark; send the JSON without it"),
    (b"\xff\xfe", "it is UTF-16 text; JSON bodies must be UTF-8"),
    (b"\xfe\xff", "it is UTF-16 text; JSON bodies must be UTF-8"),
)
_IMAGES = (
    (b"\x89PNG\r\n\x1a\n", "PNG", "image/png"),
    (b"\xff\xd8\xff", "JPEG", "image/jpeg"),
)


def not_json_hint(body: bytes, *, images: bool = False) -> str:
    """``"; <why>"`` when ``body`` is recognisably not UTF-8 JSON (a byte order mark, UTF-16,
    an image sent without its content type), else ``""``: msgspec's "invalid character
    (byte 0)" does not say what the client did wrong. ``images``: the endpoint takes images."""
    for start, why in _NOT_JSON:
        if body.startswith(start):
            return f"; {why}"
    for start, name, media_type in _IMAGES:
        if body.startswith(start):
            if images:
                return f"; it is a {name} image: send it with Content-Type: {media_type}"
            return f"; it is a {name} image, and this endpoint takes JSON only"
    if _utf16_without_mark(body[:4]):
        return "; it is UTF-16 text; JSON bodies must be UTF-8"
    return ""


def _utf16_without_mark(head: bytes) -> bool:
    """ASCII text in UTF-16: every other byte zero, in both of the first two characters (a
    stray NUL before JSON is one zero byte, not that)."""
    if len(head) < 4:
        return False
    zeros = [byte == 0 for byte in head]
    return zeros[0] != zeros[1] and zeros[:2] == zeros[2:]


def decode_json_object(
    body: bytes, what: str = "the request body", *, images: bool = False
) -> dict[str, Any]:
    """A JSON object from ``body``; anything else (a list, a number...) is a ``BadRequest``."""
    value = decode_json(body, what, images=images)
    if not isinstance(value, dict):
        raise BadRequest(f"{what} must be a JSON object, got {json_kind(value)}")
    return value


def json_kind(value: Any) -> str:
    """How a JSON value is named in error messages."""
    if isinstance(value, dict):
        return "an object"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, bool):
        return "a boolean"
    if value is None:
        return "null"
    return "a number"


def format_position(position: Sequence[int]) -> str:
    return "[" + ", ".join(str(int(i)) for i in position) + "]"


def is_b64_object(value: Any) -> bool:
    """True for TF-Serving's binary value ``{"b64": "..."}``."""
    return isinstance(value, dict) and len(value) == 1 and "b64" in value


def is_leaf(value: Any, *, allow_b64: bool = False) -> bool:
    """True for a JSON scalar (or a b64 object when allowed): one tensor element."""
    if isinstance(value, list):
        return False
    if isinstance(value, dict):
        return allow_b64 and is_b64_object(value)
    return True


def nested_to_array(value: Any, name: str, *, allow_b64: bool = False) -> np.ndarray:
    """An ``object`` array of the JSON scalars in ``value``, shaped by its nesting.

    ``value`` must be a scalar or rectangular nested lists. With ``allow_b64``,
    ``{"b64": "..."}`` objects are elements and become ``bytes``.
    """
    shape: list[int] = []
    probe = value
    while isinstance(probe, list):
        shape.append(len(probe))
        if len(shape) > MAX_RANK:
            raise BadRequest(
                f"input '{name}': lists nested more than {MAX_RANK} deep; a tensor has at "
                f"most {MAX_RANK} dimensions"
            )
        if not probe:
            break
        probe = probe[0]
    level: list[Any] = [value]
    for depth, size in enumerate(shape):
        below: list[Any] = []
        for index, item in enumerate(level):
            if not isinstance(item, list) or len(item) != size:
                where = _unravel(index, shape[:depth])
                got = f"{len(item)} items" if isinstance(item, list) else json_kind(item)
                raise BadRequest(
                    f"input '{name}': nested lists must be rectangular; expected a list of "
                    f"{size} at {format_position(where)}, got {got}"
                )
            below.extend(item)
        level = below
    for index, item in enumerate(level):
        if isinstance(item, list):
            where = _unravel(index, shape)
            raise BadRequest(
                f"input '{name}': nested lists must be rectangular; expected a value at "
                f"{format_position(where)}, got a list"
            )
        if isinstance(item, dict):
            level[index] = _b64_element(item, name, _unravel(index, shape), allow_b64)
    flat = np.empty(len(level), dtype=object)
    flat[:] = level
    return flat.reshape(shape)


def _b64_element(item: dict[str, Any], name: str, where: tuple[int, ...], allow: bool) -> bytes:
    at = f" at {format_position(where)}" if where else ""
    if not (allow and is_b64_object(item)):
        hint = ' (binary values are written {"b64": "..."})' if allow else ""
        raise BadRequest(f"input '{name}': expected a value{at}, got an object{hint}")
    text = item["b64"]
    if not isinstance(text, str):
        raise BadRequest(f"input '{name}': \"b64\"{at} must be a string, got {json_kind(text)}")
    return decode_b64(text, f"input '{name}'{at}")


def decode_b64(text: str, where: str) -> bytes:
    """Standard or URL-safe base64, padding optional; ``BadRequest`` naming ``where``."""
    cleaned = text.strip().replace("-", "+").replace("_", "/")
    cleaned += "=" * (-len(cleaned) % 4)
    try:
        return base64.b64decode(cleaned, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise BadRequest(f"{where}: invalid base64: {exc}") from None


def _unravel(index: int, shape: Sequence[int]) -> tuple[int, ...]:
    if not shape:
        return ()
    return tuple(int(i) for i in np.unravel_index(index, tuple(shape)))


# -- arrays to JSON ------------------------------------------------------------------------


def utf8_or_b64(data: bytes) -> Any:
    """Bytes as text when they are UTF-8, else as ``{"b64": "..."}``."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return b64_object(data)


def b64_object(data: bytes) -> dict[str, str]:
    return {"b64": base64.b64encode(data).decode("ascii")}


def flat_json_values(
    array: np.ndarray, bytes_value: Callable[[bytes], Any] = utf8_or_b64
) -> list[Any]:
    """The elements of ``array`` in row-major order as JSON-ready Python values."""
    kind = array.dtype.kind
    if kind == "f":
        return _float_values(array)
    if kind in "biuU":
        values: list[Any] = array.ravel().tolist()
        return values
    return [_object_value(item, bytes_value) for item in array.ravel().tolist()]


def array_to_json(array: np.ndarray, bytes_value: Callable[[bytes], Any] = utf8_or_b64) -> Any:
    """``array`` as a JSON scalar (rank 0) or nested lists."""
    flat = flat_json_values(array, bytes_value)
    if array.ndim == 0:
        return flat[0]
    holder = np.empty(len(flat), dtype=object)
    holder[:] = flat
    return holder.reshape(array.shape).tolist()


def _float_values(array: np.ndarray) -> list[Any]:
    flat = array.ravel()
    values: list[Any]
    if flat.dtype.itemsize < 8 and flat.size <= SHORTEST_DECIMALS_MAX_VALUES:
        # numpy prints the shortest decimal that round-trips in the array's own precision.
        values = [float(text) for text in flat.astype(str).tolist()]
    else:
        values = flat.tolist()
    if not np.isfinite(flat).all():
        values = [value if math.isfinite(value) else None for value in values]
    return values


def _object_value(item: Any, bytes_value: Callable[[bytes], Any]) -> Any:
    if isinstance(item, bytes):
        return bytes_value(item)
    if isinstance(item, np.generic):
        item = item.item()
        if isinstance(item, bytes):
            return bytes_value(item)
    if isinstance(item, float) and not math.isfinite(item):
        return None
    if item is None or isinstance(item, str | int | float):
        return item
    return str(item)

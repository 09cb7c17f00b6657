"""What one proxied request and its answer say, as rows for the prediction log.

Pure functions over bodies in the three dialects: a request of N instances becomes N rows
of ``{feature: value}`` and the answer N rows of ``{output: value}``. A value is a scalar
when the tensor row holds one element (``[[7], [9]]`` gives rows ``7`` and ``9``), else a
(nested) list. Image uploads are recorded as a digest, size, content type and summary
statistics (width, height, mode, mean brightness), the bytes themselves only when
configured. A body that cannot be read yields no rows and a note, never an exception:
recording must not fail a request.
"""

from __future__ import annotations

import base64
import hashlib
import io
from collections.abc import Mapping
from typing import Any

import msgspec
import numpy as np

Row = dict[str, Any]
#: What a decoded body of an unexpected shape raises here: a value of the wrong type, a
#: tensor without its ``name`` (``KeyError``), data that does not fit its ``shape``.
_UNEXPECTED_SHAPE = (AttributeError, TypeError, ValueError, LookupError)


def request_rows(
    dialect: str,
    body: bytes,
    content_type: str,
    headers: Mapping[str, str],
    keep_image_bytes: bool = False,
) -> tuple[list[Row], bool, str | None]:
    """(rows, single_instance, note) of a request body."""
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
    header_length = headers.get("inference-header-content-length")
    try:
        payload = msgspec.json.decode(body[: int(header_length)] if header_length else body)
    except (msgspec.DecodeError, ValueError, UnicodeDecodeError):
        return [], False, "request body is not JSON"
    except RecursionError:  # msgspec recurses
        return [], False, "request body is nested too deeply"
    try:
        if dialect == "v2":
            return _oip_rows(payload.get("inputs")), False, None
        if dialect == "tfserving":
            return _tfserving_request_rows(payload), False, None
        return _eval_rows(payload)
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
) -> tuple[list[Row], str | None]:
    """(rows, error message) of an answer body; the error of a 4xx/5xx ``{"error": ...}``."""
    header_length = headers.get("inference-header-content-length")
    try:
        payload = msgspec.json.decode(body[: int(header_length)] if header_length else body)
    except (msgspec.DecodeError, ValueError, UnicodeDecodeError, RecursionError):
        return [], None
    if not isinstance(payload, dict):
        return [], None
    if "error" in payload:
        return [], str(payload["error"])
    try:
        if dialect == "v2":
            return _oip_rows(payload.get("outputs")), None
        if dialect == "tfserving":
            if "predictions" in payload:
                return [_named(item, "prediction") for item in payload["predictions"]], None
            return _columns(_named(payload.get("outputs"), "outputs")), None
        outputs = payload.get("outputs") or {}
        if single_instance:
            return [{name: _cell(value) for name, value in outputs.items()}], None
        return _columns(outputs), None
    except _UNEXPECTED_SHAPE:
        return [], None


def _eval_rows(payload: Any) -> tuple[list[Row], bool, str | None]:
    if not isinstance(payload, dict):
        return [], False, "request body is not a JSON object"
    if payload and not any(isinstance(value, list) for value in payload.values()):
        return [dict(payload)], True, None
    return _columns(payload), False, None


def _tfserving_request_rows(payload: Any) -> list[Row]:
    if "instances" in payload:
        return [_named(item, "instance") for item in payload["instances"]]
    return _columns(_named(payload.get("inputs"), "inputs"))


def _oip_rows(tensors: Any) -> list[Row]:
    columns: dict[str, list[Any]] = {}
    for tensor in tensors or []:
        data, shape = tensor.get("data"), tensor.get("shape") or []
        if data is None or not shape:  # binary tensor data: not recorded
            continue
        array = np.array(data, dtype=object).reshape(shape)
        columns[tensor["name"]] = [_cell(row.tolist()) for row in array]
    return _transpose(columns)


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
    rows = max((len(values) for values in columns.values()), default=0)
    return [
        {name: values[i] if i < len(values) else None for name, values in columns.items()}
        for i in range(rows)
    ]


def _cell(value: Any) -> Any:
    """Unwrap single-element lists: the row ``[7]`` of a ``[-1, 1]`` tensor is ``7``."""
    while isinstance(value, list) and len(value) == 1:
        value = value[0]
    return value

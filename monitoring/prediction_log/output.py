"""Text renderings of a ``SqlResult`` for ``driftgate sql``: an aligned table, CSV or JSON.

JSON is one object, ``{"columns": [...], "rows": [[...], ...], "truncated": false}``, with
timestamps and dates as ISO 8601 strings and other non-JSON values as their text.
"""

from __future__ import annotations

import csv
import io
from datetime import date, datetime
from typing import Any

import msgspec

from monitoring.prediction_log.sql import SqlResult

_MAX_CELL = 60


def render(result: SqlResult, fmt: str) -> str:
    if fmt == "json":
        return _json(result)
    if fmt == "csv":
        return _csv(result)
    if fmt == "table":
        return _table(result)
    raise ValueError(f"unknown format {fmt!r}: use table, csv or json")


def _text(value: Any) -> str:
    if value is None:
        return "NULL"
    if isinstance(value, datetime | date):
        return value.isoformat()
    return str(value)


def _table(result: SqlResult) -> str:
    cells = [[_clip(_text(v)) for v in row] for row in result.rows]
    widths = [len(name) for name in result.columns]
    for row in cells:
        widths = [max(w, len(c)) for w, c in zip(widths, row, strict=True)]
    lines = [
        "  ".join(n.ljust(w) for n, w in zip(result.columns, widths, strict=True)).rstrip(),
        "  ".join("-" * w for w in widths),
    ]
    lines.extend(
        "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in cells
    )
    count = len(result.rows)
    more = " (truncated)" if result.truncated else ""
    lines.append(f"({count} row{'s' if count != 1 else ''}{more})")
    return "\n".join(lines) + "\n"


def _clip(text: str) -> str:
    text = text.replace("\n", " ")
    return text if len(text) <= _MAX_CELL else text[: _MAX_CELL - 1] + "…"


def _csv(result: SqlResult) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(result.columns)
    for row in result.rows:
        writer.writerow(["" if v is None else _text(v) for v in row])
    return buffer.getvalue()


def _json(result: SqlResult) -> str:
    body = {"columns": result.columns, "rows": result.rows, "truncated": result.truncated}
    return msgspec.json.encode(body, enc_hook=str).decode() + "\n"

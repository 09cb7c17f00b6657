"""One answered exchange, as the gateway saw it, and the prediction-log rows it makes.

``Exchange`` is what the request path hands ``gateway.recording.Recorder``: the request and
its answer (bodies and headers), the route, arm, target and timing. On the recorder
thread, ``exchange_records`` turns it into ``PredictionRecord`` rows, one per instance,
reading the bodies in their dialect with ``gateway.exchange``; a refused request's inputs
of unknown names are folded into one column (``UNRECOGNISED``). Pure: no I/O, no state,
and an unreadable body is noted in the rows, not raised.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from gateway.exchange import request_rows, response_rows
from monitoring.prediction_log import PredictionRecord


@dataclass(frozen=True)
class Exchange:
    """One answered request (or shadow call), as the gateway saw it."""

    request_id: str
    timestamp: datetime
    route: str
    arm: str
    role: str
    dialect: str
    model: str
    version: str
    replica: str
    status: int
    latency_s: float
    trace_id: str | None
    request_body: bytes
    request_headers: Mapping[str, str]  # lower-cased names
    response_body: bytes
    response_headers: Mapping[str, str]


#: The input column of a refused request's values whose names no answered request of its
#: model has used: one JSON text column (``in__unrecognised``), not a column per name.
UNRECOGNISED = "_unrecognised"


def exchange_records(
    exchange: Exchange,
    keep_image_bytes: bool = False,
    known_inputs: Collection[str] | None = None,
) -> list[PredictionRecord]:
    """The log rows of one exchange. With ``known_inputs`` (the input names of the model's
    answered requests), a refused request's (4xx) inputs of other names are folded into
    ``UNRECOGNISED``: every refused request is logged, and made-up names must not add
    columns to the store without bound. Names the runtime accepted keep their columns."""
    content_type = exchange.request_headers.get("content-type", "").split(";")[0].strip()
    inputs, single, note = request_rows(
        exchange.dialect,
        exchange.request_body,
        content_type,
        exchange.request_headers,
        keep_image_bytes,
    )
    refused = 400 <= exchange.status < 500
    if known_inputs is not None and refused and not content_type.startswith("image/"):
        inputs = [_fold_unrecognised(row, known_inputs) for row in inputs]
    outputs, error = response_rows(
        exchange.dialect, exchange.response_body, exchange.response_headers, single
    )
    rows = max(len(inputs), len(outputs), 1)
    return [
        PredictionRecord(
            request_id=exchange.request_id,
            row=row,
            timestamp=exchange.timestamp,
            route=exchange.route,
            arm=exchange.arm,
            role=exchange.role,
            model=exchange.model,
            version=exchange.version,
            replica=exchange.replica,
            dialect=exchange.dialect,
            status=exchange.status,
            latency_s=exchange.latency_s,
            trace_id=exchange.trace_id,
            inputs=inputs[row] if row < len(inputs) else {},
            outputs=outputs[row] if row < len(outputs) else {},
            error=error or (note if exchange.status < 400 and note else None),
        )
        for row in range(rows)
    ]


def _fold_unrecognised(row: dict[str, Any], known: Collection[str]) -> dict[str, Any]:
    unrecognised = {name: value for name, value in row.items() if name not in known}
    if not unrecognised:
        return row
    kept = {name: value for name, value in row.items() if name in known}
    kept[UNRECOGNISED] = unrecognised
    return kept

"""One answered exchange, as the gateway saw it, and the prediction-log rows it makes.

``Exchange`` is what the request path hands ``gateway.recording.Recorder``: the request and
its answer (bodies and headers), the route, arm, target and timing. On the recorder
thread, ``exchange_records`` turns it into ``PredictionRecord`` rows, one per instance,
reading the bodies in their dialect with ``gateway.exchange``. Pure: no I/O, no state,
and an unreadable body is noted in the rows, not raised.

Only requests the runtime accepted (answered 2xx) decide the store's input columns, their
names and their types: the runtime checked them against the model. A request it did not
accept (refused 4xx, failed 5xx) is logged whole all the same, but a value whose name no
accepted request of its model has used, or whose JSON type (``json_kind``) differs from
every type the accepted requests sent under that name, goes into one JSON text column
(``UNRECOGNISED``, ``in__unrecognised``) instead of its own. So one client sending
``"fare": "seven"`` cannot turn ``in_fare`` into VARCHAR for every analyst, nor add a
column per made-up name; until a model has accepted a request, all of a refused request's
inputs go there. An exchange whose instances cannot be paired (``MISREAD``) is one row
whose inputs and outputs are both kept whole in ``UNRECOGNISED`` (``in__unrecognised``,
``out__unrecognised``), so it cannot give a column a wrong shape either.

A compressed request body is read as the runtime read it (``readable_body``): inflated, to
at most ``max_body_bytes``. One that cannot be (corrupt data, which the runtime refuses
too; more than ``max_body_bytes`` inflated; an encoding the runtime does not take) has no
input columns, and ``error`` says why when the answer names no error of its own.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from gateway.exchange import (
    EVAL_FORM_HEADER,
    MISREAD,
    NO_ROWS,
    Row,
    readable_body,
    request_rows,
    response_rows,
    whole,
)
from gateway.settings import DEFAULT_MAX_BODY_BYTES
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
    #: The ``sub`` of the caller's verified token; None when auth is off.
    subject: str | None = None


#: The input column of a not-accepted request's values that no accepted request of its
#: model sent under that name with that JSON type: one JSON text column
#: (``in__unrecognised``), ``{"fare": "seven", "zz1": 1}``, not a column per name nor a
#: change of type. Also the output column (``out__unrecognised``) of a ``MISREAD`` answer.
UNRECOGNISED = "_unrecognised"


def exchange_records(
    exchange: Exchange,
    keep_image_bytes: bool = False,
    known_inputs: Mapping[str, Collection[str]] | None = None,
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
) -> list[PredictionRecord]:
    """The log rows of one exchange.

    ``known_inputs`` maps each input name of the model's accepted (2xx) requests to the
    JSON types (``json_kind``) they sent under it. With it, a request that was not
    accepted keeps in its own columns only the values of those names and types (and
    nulls); the rest go into ``UNRECOGNISED``. The caller learns from accepted requests
    (``learn_inputs``). A compressed request body is inflated to at most
    ``max_body_bytes``."""
    content_type = exchange.request_headers.get("content-type", "").split(";")[0].strip()
    body, unreadable = readable_body(
        exchange.request_body, exchange.request_headers, max_body_bytes
    )
    inputs: list[Row] = []
    single, note = False, unreadable
    if body is not None:
        inputs, single, note = request_rows(
            exchange.dialect,
            body,
            content_type,
            exchange.request_headers,
            keep_image_bytes,
            eval_form=exchange.response_headers.get(EVAL_FORM_HEADER),
        )
    outputs, error, answer_note = response_rows(
        exchange.dialect, exchange.response_body, exchange.response_headers, single
    )
    note = note or answer_note
    if inputs and outputs and len(inputs) != len(outputs):
        # Pairing the i-th input with the i-th output would misalign them.
        inputs, outputs, note = [whole(inputs)], [whole(outputs)], MISREAD
    if note == MISREAD:
        # Whole tensors are no instance's values: they must not give a column its shape.
        inputs = [{UNRECOGNISED: whole(inputs)}] if inputs else []
        outputs = [{UNRECOGNISED: whole(outputs)}] if outputs else []
    accepted = 200 <= exchange.status < 300
    kept_whole = note == MISREAD or content_type.startswith("image/")
    if known_inputs is not None and not accepted and not kept_whole:
        inputs = [_set_aside(row, known_inputs) for row in inputs]
    if note == NO_ROWS:
        if exchange.status < 400:
            return []  # an answered batch of 0: no prediction (a row would be all NULL)
        note = None  # a refused one: the runtime's error says why
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
            # A body that could not be decoded says so even when refused (the runtime
            # refused it too), unless the answer names its own error.
            error=error or unreadable or (note if exchange.status < 400 and note else None),
            subject=exchange.subject,
        )
        for row in range(rows)
    ]


def learn_inputs(known: dict[str, set[str]], records: Sequence[PredictionRecord]) -> None:
    """Add the input names and JSON types of an accepted exchange's rows to ``known``.

    The runtime checked every value's type, so a list's first non-null item speaks for
    the rest (no walk over a large tensor). A row of whole tensors (``MISREAD``) teaches
    nothing: its values are not one instance's."""
    for record in records:
        if record.error == MISREAD:
            continue
        for name, value in record.inputs.items():
            kinds = known.setdefault(name, set())
            if value is not None:
                kinds.add(json_kind(value, checked=True))


def json_kind(value: Any, *, checked: bool = False) -> str:
    """The JSON type of a value, as a column's type in the store depends on it:
    ``number`` (ints and floats read as one DOUBLE), ``bool``, ``string``, ``object``,
    ``null``, and ``list<...>`` of its non-null items' kind (``list<mixed>`` when they
    differ, which the store can only keep as text). ``checked``: the values were
    validated, so look at a list's first non-null item only."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        items = (item for item in value if item is not None)
        if checked:
            first = next(items, None)
            inner = "null" if first is None else json_kind(first, checked=True)
        else:
            kinds = {json_kind(item) for item in items}
            inner = kinds.pop() if len(kinds) == 1 else "mixed" if kinds else "null"
        return f"list<{inner}>"
    return "object"


def _set_aside(row: dict[str, Any], known: Mapping[str, Collection[str]]) -> dict[str, Any]:
    aside = {name: value for name, value in row.items() if not _fits(value, known.get(name))}
    if not aside:
        return row
    kept = {name: value for name, value in row.items() if name not in aside}
    kept[UNRECOGNISED] = aside
    return kept


def _fits(value: Any, kinds: Collection[str] | None) -> bool:
    """Whether a not-accepted value may go into its own column: its name is known and it
    is null or of a JSON type the accepted requests sent there."""
    return kinds is not None and (value is None or json_kind(value) in kinds)

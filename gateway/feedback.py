"""The prediction log's HTTP surface: ground-truth feedback and read-only analyst SQL.

``POST /v1/feedback`` (scope ``feedback`` or ``predict``) takes labels by request id, any
time after the prediction::

    {"request_id": "abc", "label": 1}                       one label (every row)
    {"request_id": "abc", "row": 2, "label": "cat"}         one row of a batch request
    {"feedback": [{"request_id": "abc", "label": 1}, ...]}  up to 10,000 at once

Ids the gateway never logged are stored all the same and counted as unknown (the
prediction may have been logged by another gateway replica, or not sampled). A label for a
row past the last one of a request this gateway logged is refused with 400, none of the
batch stored: it would join no prediction.

``202`` means the labels are queued for the prediction log's writer, all of the post's or
none: when its queue is full (or it is closed) the post is a 503 with ``Retry-After``
(``FeedbackRefused``), none of it stored, to be sent again. A post over ``INLINE_BODY_BYTES`` (a
few hundred labels) is decoded, checked and queued in a worker thread, at most
``GatewayState.feedback_turns`` posts at once, so that predictions keep their event loop.

``POST /admin/sql`` (scope ``read:logs``) runs one read-only statement on the store's
catalog, with DuckDB's file access confined to the store: ``{"sql": "select ...",
"max_rows": 1000}`` answers ``{"columns": [...], "rows": [[...]], "truncated": false}``.
A query the store cannot take now is a 503 with ``Retry-After``: every turn taken, or the
catalog held open read-write by another process (``CatalogBusy``, which names its PID).
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Annotated, Any

import msgspec
from litestar import MediaType, Response, post

from gateway.auth import AuthError
from gateway.errors import BadGatewayRequest, GatewayError, PayloadTooLarge
from gateway.recording import FeedbackRefused, LabelsNothing, Recorder, now_utc
from gateway.state import SQL_TURNS, AnyRequest, GatewayState, gateway_state
from monitoring.prediction_log import (
    CatalogBusy,
    FeedbackRecord,
    SqlError,
    SqlRefused,
    run_sql,
)

MAX_LABELS = 10_000
#: An analyst's query: at most this long from arrival, answered with at most about this
#: many bytes of rows (``truncated`` says so, as it does for ``max_rows``); a query that
#: finds no free turn (``GatewayState.sql_turns``) within ``SQL_WAIT_S`` is a 503.
SQL_TIME_LIMIT_S = 30.0
SQL_MAX_BYTES = 16 * 2**20
SQL_WAIT_S = 10.0
#: ``Retry-After`` of a query that found the catalog held read-write by another process.
CATALOG_BUSY_RETRY_S = 10
MAX_ROW = 2**31 - 1  # the store's ``row`` column is int32
#: Feedback bodies larger than this (a few hundred labels) are decoded, checked and queued
#: in a worker thread: a 10,000-label post held the event loop, and every prediction
#: waiting on it, for 25-77 ms.
INLINE_BODY_BYTES = 16 * 2**10
#: ``Retry-After`` of labels the prediction log's queue refused: about a few flushes.
FEEDBACK_RETRY_S = 5
Scalar = str | int | float | bool


class _Label(msgspec.Struct, forbid_unknown_fields=True):
    request_id: Annotated[str, msgspec.Meta(min_length=1, max_length=256)]
    label: Scalar
    row: Annotated[int, msgspec.Meta(ge=0, le=MAX_ROW)] | None = None


class _Batch(msgspec.Struct, forbid_unknown_fields=True):
    feedback: Annotated[list[_Label], msgspec.Meta(min_length=1, max_length=MAX_LABELS)]


class _Query(msgspec.Struct, forbid_unknown_fields=True):
    sql: Annotated[str, msgspec.Meta(min_length=1, max_length=100_000)]
    max_rows: Annotated[int, msgspec.Meta(ge=1, le=100_000)] = 1_000


class LogUnavailable(GatewayError):
    status_code = 503


class LogQueueFull(LogUnavailable):
    """Labels the prediction log's writer refused; it logs its refusals, once a minute."""

    quiet = True


class SqlBusy(GatewayError):
    status_code = 503


def _recording(state: GatewayState) -> Recorder:
    if state.recorder is None or state.settings.log is None:
        raise LogUnavailable("the prediction log is off in this gateway's configuration")
    return state.recorder


@post("/v1/feedback", status_code=202)
async def feedback(request: AnyRequest) -> dict[str, int]:
    state = gateway_state(request)
    try:  # either scope; a refusal names `feedback`, the one meant for labellers
        principal = state.authorize(request, "predict")
    except AuthError:
        principal = state.authorize(request, "feedback")
    recorder = _recording(state)
    body = await request.body()
    subject = principal.subject if principal else None
    if len(body) <= INLINE_BODY_BYTES:
        return _take_feedback(recorder, body, subject)
    async with state.feedback_turns:
        return await asyncio.to_thread(_take_feedback, recorder, body, subject)


def _take_feedback(recorder: Recorder, body: bytes, subject: str | None) -> dict[str, int]:
    """Decode and check one post's labels and queue them, all or none; the answer."""
    labels = _parse_labels(body)
    received = now_utc()
    records = [
        FeedbackRecord(
            request_id=item.request_id,
            row=item.row,
            label=item.label,
            timestamp=received,
            subject=subject,
        )
        for item in labels
    ]
    try:
        matched, unknown = recorder.record_feedback(records)
    except LabelsNothing as exc:
        raise BadGatewayRequest(str(exc)) from None
    except FeedbackRefused as exc:
        if not exc.retry:
            raise PayloadTooLarge(str(exc)) from None
        raise LogQueueFull(str(exc), headers={"Retry-After": str(FEEDBACK_RETRY_S)}) from None
    return {"accepted": len(records), "matched": matched, "unknown": unknown}


def _parse_labels(body: bytes) -> list[_Label]:
    try:
        raw = msgspec.json.decode(body)
    except msgspec.DecodeError as exc:
        raise BadGatewayRequest(f"the feedback is not valid JSON: {exc}") from None
    except RecursionError:
        raise BadGatewayRequest("the feedback is nested too deeply") from None
    try:
        if isinstance(raw, dict) and "feedback" in raw:
            return msgspec.convert(raw, _Batch).feedback
        return [msgspec.convert(raw, _Label)]
    except msgspec.ValidationError as exc:
        raise BadGatewayRequest(
            f'invalid feedback: {exc}; expected {{"request_id": "...", "label": 1}} '
            f'or {{"feedback": [...]}} with at most {MAX_LABELS} labels'
        ) from None


@post("/admin/sql", status_code=200)
async def sql(request: AnyRequest) -> Response[bytes]:
    state = gateway_state(request)
    state.authorize(request, "read:logs")
    _recording(state)
    assert state.settings.log is not None
    arrived = time.monotonic()
    try:
        query = msgspec.json.decode(await request.body(), type=_Query)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise BadGatewayRequest(f'expected {{"sql": "select ...", "max_rows": N}}: {exc}') from None
    try:
        async with asyncio.timeout(SQL_WAIT_S):
            await state.sql_turns.acquire()
    except TimeoutError:
        raise SqlBusy(
            f"{SQL_TURNS} queries are running and none finished within {SQL_WAIT_S:g} s; "
            "try again later",
            headers={"Retry-After": "10"},
        ) from None
    try:
        # The time limit counts from arrival: waiting for a turn spends it too.
        budget = max(SQL_TIME_LIMIT_S - (time.monotonic() - arrived), 0.1)
        answer = await asyncio.to_thread(_answer, state.settings.log.store, query, budget)
    finally:
        state.sql_turns.release()
    return Response(answer, media_type=MediaType.JSON)


def _answer(store: Path, query: _Query, timeout_s: float) -> bytes:
    """The query's JSON answer, built in the calling thread (not on the event loop)."""
    try:
        result = run_sql(
            store, query.sql, max_rows=query.max_rows, timeout_s=timeout_s, max_bytes=SQL_MAX_BYTES
        )
    except SqlRefused as exc:
        raise BadGatewayRequest(f"refused: {exc}") from None
    except SqlError as exc:
        if isinstance(exc.__cause__, CatalogBusy):  # a condition of the server, not the query
            raise SqlBusy(
                f"the store's catalog is busy: {exc}; try again once that process has closed it",
                headers={"Retry-After": str(CATALOG_BUSY_RETRY_S)},
            ) from None
        raise BadGatewayRequest(f"query failed: {exc}") from None
    return msgspec.json.encode(
        {
            "columns": result.columns,
            "rows": [[_jsonable(value) for value in row] for row in result.rows],
            "truncated": result.truncated,
        }
    )


def _jsonable(value: Any) -> Any:
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    return str(value)  # timestamps, decimals, dates


ROUTES = [feedback, sql]

"""Requests in flight counted, and the line a shutdown writes about those it cut off
(monitoring/in_flight.py, shared by the runtime and the gateway; their real processes are
tested in tests/runtime/test_shutdown_bound.py and tests/e2e/test_gateway_shutdown.py)."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest

from monitoring.in_flight import InFlightCount, RequestsInFlight, log_cut_off

LOG = logging.getLogger("driftgate.test.in_flight")


async def hang(scope: Any, receive: Any, send: Any) -> None:
    await asyncio.Event().wait()


async def answer(scope: Any, receive: Any, send: Any) -> None:
    await asyncio.sleep(0)


def test_requests_cancelled_or_still_running_are_unanswered_and_answered_ones_not() -> None:
    count = InFlightCount()
    app = RequestsInFlight(hang, count)

    async def shut_down() -> None:
        answered = RequestsInFlight(answer, count)
        await answered({"type": "http"}, None, None)
        hung = [asyncio.create_task(app({"type": "http"}, None, None)) for _ in range(3)]
        lifespan = asyncio.create_task(app({"type": "lifespan"}, None, None))
        await asyncio.sleep(0)
        hung[0].cancel()  # as uvicorn does after its grace period
        await asyncio.gather(hung[0], return_exceptions=True)
        assert (count.running, count.cancelled, count.unanswered) == (2, 1, 3)
        for task in [*hung[1:], lifespan]:
            task.cancel()
        await asyncio.gather(*hung[1:], lifespan, return_exceptions=True)

    asyncio.run(shut_down())

    assert (count.running, count.cancelled) == (0, 3)  # a lifespan is not a request


@pytest.mark.parametrize(
    ("running", "cancelled", "said"),
    [
        (1, 0, "shutdown: 1 request was cut off unanswered"),
        (1, 2, "shutdown: 3 requests were cut off unanswered"),
    ],
)
def test_the_cut_off_line_says_how_many_and_names_the_setting(
    caplog: pytest.LogCaptureFixture, running: int, cancelled: int, said: str
) -> None:
    count = InFlightCount()
    count.running, count.cancelled = running, cancelled

    with caplog.at_level(logging.WARNING, LOG.name):
        log_cut_off(LOG, count, 7, "listen.shutdown_timeout_s")

    assert [record.getMessage() for record in caplog.records] == [
        f"{said}, still running after the 7 s grace period (listen.shutdown_timeout_s); "
        "their clients' connections are closed"
    ]


def test_nothing_is_said_when_nothing_was_cut_off(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.DEBUG, LOG.name):
        log_cut_off(LOG, InFlightCount(), 7, "listen.shutdown_timeout_s")

    assert caplog.records == []

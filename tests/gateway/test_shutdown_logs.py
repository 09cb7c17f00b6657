"""The gateway's lifespan ends by waiting for its queued log records (monitoring/log_queue.py):
uvicorn's SIGTERM after the lifespan ended the process with records still queued."""

from __future__ import annotations

import pytest

import gateway.app
from tests.gateway.fakes import FakeRuntime, gateway_settings, run_gateway


def test_the_gateway_waits_for_its_queued_log_records_when_it_stops(
    runtime: FakeRuntime, monkeypatch: pytest.MonkeyPatch
) -> None:
    flushed: list[str] = []

    async def flush() -> None:
        flushed.append("flushed")

    monkeypatch.setattr(gateway.app, "flush_queued_logs", flush)
    with run_gateway(gateway_settings(replicas=runtime.replicas), runtime):
        assert flushed == []
    assert flushed == ["flushed"]
